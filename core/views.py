from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from core.api.exception_handler import error_body
from core.errors import InternalError
from core.health import broker_reachable, database_reachable, health_checks
from core.metrics import metrics_exposition
from core.networks import address_in


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    database_ok = database_reachable()
    broker_ok = broker_reachable()
    reports = {check.name: (check, check.report()) for check in health_checks()}
    healthy = database_ok and broker_ok and all(check.healthy(report) for check, report in reports.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "database": "ok" if database_ok else "down",
        "broker": "ok" if broker_ok else "down",
        **{name: report for name, (_, report) in reports.items()},
    }
    return JsonResponse(body, status=200 if database_ok else 503)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception or Exception("not found"))


# The API docs pages (Swagger UI, Redoc) load only the project's own files
# (drf-spectacular-sidecar under /static/, the schema under /api/): the browser itself
# refuses anything else, such as the Redocly logo Redoc's bundle links from its CDN.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'self'; form-action 'self'"
)


def docs_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wraps an API docs view: its page may load nothing from another host."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response

    return wrapped


@csrf_exempt
def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """The last route under /api/: any path no endpoint serves answers the envelope's 404,
    whatever the method, DEBUG or not (Django's DEBUG 404 page is HTML)."""
    return JsonResponse(error_body("not_found", "Not found."), status=404)


# A catch-all: core.middleware.CanonicalSlashMiddleware still redirects a path it matches
# when the path with (or without) its trailing slash has an endpoint.
api_not_found.catch_all = True  # type: ignore[attr-defined]


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(InternalError.code, InternalError.default_message), status=InternalError.status)
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        if isinstance(exception, RequestDataTooBig):  # a body above DATA_UPLOAD_MAX_MEMORY_SIZE
            return JsonResponse(error_body("request_too_large", "The request body is too large."), status=400)
        return JsonResponse(error_body("invalid_parameter", "A query parameter is invalid."), status=400)
    return defaults.bad_request(request, exception or Exception("bad request"))


def _metrics_token_matches(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition (core.metrics: every process of the host in multiprocess
    mode, plus the state read at scrape time), for the scraper only: with `Authorization: Bearer
    <METRICS_TOKEN>` or from an address in METRICS_ALLOWED_NETWORKS. The counters show
    fee totals and trade counts per market, which are not public."""
    if _metrics_token_matches(request) or address_in(
        str(request.META.get("REMOTE_ADDR") or ""), settings.METRICS_ALLOWED_NETWORKS
    ):
        return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
    if settings.METRICS_TOKEN:
        response = JsonResponse(error_body("not_authenticated", "A metrics token is required."), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return JsonResponse(error_body("permission_denied", "Metrics are not served to this address."), status=403)
