"""Django's ASGI handler, with a request body's length known however it was sent."""

from __future__ import annotations

import io
from typing import IO, Any

import django
from django.core.handlers.asgi import ASGIHandler, ASGIRequest


class PlatformASGIRequest(ASGIRequest):
    """A body sent without Content-Length (`Transfer-Encoding: chunked`, a client streaming
    a generator) arrives whole, but what reads a body by its length took it for none: DRF
    parsed `{}`, so `POST /api/orders/cancel-all` with `{"market": ...}` chunked cancelled
    every market's orders, and Django's DATA_UPLOAD_MAX_MEMORY_SIZE was never checked. The
    handler has read the whole body before the request is made: its size is the length."""

    def __init__(self, scope: dict[str, Any], body_file: IO[bytes]) -> None:
        super().__init__(scope, body_file)
        if "CONTENT_LENGTH" not in self.META:
            size = body_file.seek(0, io.SEEK_END)
            body_file.seek(0)
            if size:
                self.META["CONTENT_LENGTH"] = str(size)


class PlatformASGIHandler(ASGIHandler):
    request_class = PlatformASGIRequest


def platform_asgi_application() -> PlatformASGIHandler:
    """As django.core.asgi.get_asgi_application, with the platform's request."""
    django.setup(set_prefix=False)
    return PlatformASGIHandler()
