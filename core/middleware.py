from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core.logging import correlation_context

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CorrelationIdMiddleware:
    """Adopt a well-formed X-Request-ID or make one; echo it in the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        with correlation_context(incoming if _SAFE_ID.match(incoming) else None) as correlation_id:
            response = self.get_response(request)
        response["X-Request-ID"] = correlation_id
        return response
