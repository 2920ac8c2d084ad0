from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.api.exception_handler import error_body
from core.health import broker_reachable, database_reachable


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    from orders.sequencer.transport import engines_report
    from revenue.chain_status import chain_health

    database_ok = database_reachable()
    broker_ok = broker_reachable()
    chain = chain_health()
    engines = engines_report()
    engines_ok = all(engine != "down" for engine in engines.values())
    healthy = database_ok and broker_ok and chain in {"ok", "embedded"} and engines_ok
    body = {
        "status": "ok" if healthy else "degraded",
        "database": "ok" if database_ok else "down",
        "broker": "ok" if broker_ok else "down",
        "chain": chain,
        "engines": engines,
    }
    return JsonResponse(body, status=200 if database_ok else 503)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception or Exception("not found"))


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("internal_error", "The request could not be processed."), status=500)
    return defaults.server_error(request)
