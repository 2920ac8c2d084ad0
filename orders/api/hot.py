"""POST /api/orders (and a bearer token's cancel, order_cancel_hot_async) on the hot path:
authenticate from the request's credentials (no user row: accounts.authentication.
request_principal), count the order rate in the process
(core.api.throttling.worker_rate_count), read the body (orders.engine.requests.
order_request_parse), send the command to the engine, answer with the body the engine
built, with the count's RateLimit headers (as RateLimitHeaders sets them on the DRF views'
answers). No DRF request, serializer or ORM on the way.

Two doors: under ASGI, core.api.fast serves a bearer token's placement on the event loop
(order_place_prepare, orders.api.urls.FAST_ROUTES: the engine's answer awaited); the rest
(a signed API key, whose key row is read; a WSGI server; the test client) reaches the view,
which answers through order_place_hot before DRF.

What neither takes (no header credentials: a session or nobody; a body that is not JSON,
is empty or does not parse) goes to the DRF view, which answers it exactly as before (401
not_authenticated, 403 without the CSRF token, 415, 400 malformed_request). All count the
same per-process order rate."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections
from django.http import HttpRequest, HttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from accounts.authentication import Principal, request_principal, request_principal_reads
from core.api.exception_handler import API_CHALLENGE, DATABASE_UNAVAILABLE, error_body
from core.api.fast import FastHandler, answered
from core.api.params import query_names_refused
from core.api.throttling import RateLimit, worker_rate_count
from core.encoding import json_compact, json_read
from core.errors import ApplicationError, ServiceUnavailable
from orders.api.serializers import order_output
from orders.engine.requests import OrderRequest, order_request_parse
from orders.selectors.orders import order_get_for_user
from orders.services.orders import PlaceResult, order_cancel_as_async, order_place_as, order_place_as_async

logger = logging.getLogger(__name__)
JSON = "application/json"
ORDER_RATE_SCOPE = "orders"
CANCEL_RATE_SCOPE = "cancels"


class PermissionRefused(ApplicationError):
    code = "permission_denied"
    status = 403
    default_message = "You are not allowed to do this."


class RateExceeded(ApplicationError):
    code = "throttled"
    status = 429
    default_message = "Too many requests; slow down."


def json_response(body: Any, *, status: int) -> HttpResponse:
    """As DRF's JSONRenderer writes it: compact, UTF-8, U+2028/2029 escaped (the contract's
    bodies: text, integers, null, booleans; tests/orders/api/test_web_tier_shortcuts.py)."""
    data = json_compact(body)
    if b"\xe2\x80" in data:  # the UTF-8 of U+2028 and U+2029 begins so (as do other marks)
        data = data.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
    return HttpResponse(data, status=status, content_type=JSON)


def error_response(error: ApplicationError, *, rate: RateLimit | None = None) -> HttpResponse:
    """The contract's envelope (core.api.exception_handler.error_body) with its headers
    (`rate`: the count of a request that was counted). A 401 has no RateLimit headers
    even when the engine refused the credentials after the count (a user deactivated, a
    password changed): as on the DRF views, which authenticate before they count."""
    response = json_response(error_body(error.code, error.message, error.fields), status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        response["WWW-Authenticate"] = API_CHALLENGE
    if rate is not None and error.status != 401:
        rate.apply(response)
    return response


class Refused(Exception):
    """An ApplicationError of a request, with the count of the rate it was refused after
    (None: refused before it was counted)."""

    def __init__(self, error: ApplicationError, rate: RateLimit | None) -> None:
        self.error, self.rate = error, rate
        super().__init__(error.message)


def order_rate_check(*, user_id: int, scope: str = ORDER_RATE_SCOPE) -> RateLimit | None:
    """Counts one placement (or, `scope` CANCEL_RATE_SCOPE, one cancel) of the user in this
    process: the count (None: the scope has no rate); Refused with RateExceeded beyond its
    share of the rate."""
    rate = worker_rate_count(scope=scope, ident=str(user_id))
    if rate is not None and not rate.allowed:
        raise Refused(RateExceeded(retry_after=rate.retry_after), rate)
    return rate


def _strict_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _json_body(request: HttpRequest) -> object:
    """The parsed body; ValueError when it is not JSON (or empty)."""
    charset = (request.content_params or {}).get("charset", "utf-8").lower()
    if request.content_type != JSON or charset not in ("utf-8", "utf8"):
        raise ValueError("not JSON")
    raw = request.body
    if not raw:
        raise ValueError("empty")
    # Numbers read exactly: an amount of 2000.0000000000001 is not 2000.0 (requests.amount_received).
    return json_read(raw.decode("utf-8"), parse_constant=_strict_constant, parse_float=Decimal)


def place_answer(result: PlaceResult, *, user_id: int) -> HttpResponse:
    """The order as the engine built it, or (a repeated client_order_id) as stored."""
    body = result.body
    if body is None:
        body = order_output(order_get_for_user(user_id=user_id, order_id=result.order_id))
    return json_response(body, status=201 if result.created else 200)


def _stored_answer(result: PlaceResult, *, user_id: int) -> HttpResponse:
    # Off Django's request cycle, whose signals would check the thread's connection.
    close_old_connections()
    try:
        return place_answer(result, user_id=user_id)
    finally:
        close_old_connections()


@dataclass(frozen=True, slots=True)
class Placement:
    """A placement the hot path takes: its caller and its body (JSON, not validated yet)."""

    principal: Principal
    data: object
    # The request's query parameters: refused, as the DRF view refuses them (a placement
    # reads its body only; `?time_in_force=FOK` was dropped and the order rested GTC).
    query: tuple[str, ...] = ()

    def order_request(self) -> tuple[OrderRequest, RateLimit | None]:
        """Permission, order rate, query and body, in the order of the DRF view, and the
        order rate's count (Refused: the error and the count, if the request was counted)."""
        if not self.principal.can_trade:
            raise Refused(PermissionRefused(), None)
        rate = order_rate_check(user_id=self.principal.user_id)
        try:
            query_names_refused(self.query)
            return order_request_parse(self.data), rate
        except ApplicationError as error:
            raise Refused(error, rate) from error


def _answer(response: HttpResponse, rate: RateLimit | None) -> HttpResponse:
    if rate is not None:
        rate.apply(response)
    return response


def order_place_read(request: HttpRequest) -> Placement | HttpResponse | None:
    """The placement, or the answer to its credentials (401), or None: the DRF view answers."""
    try:
        principal = request_principal(request)
    except ApplicationError as error:
        return error_response(error)
    except (OperationalError, InterfaceError) as exc:
        # A signed request's key row unread, the database away (a restart, "too many
        # clients"): retryable, as DRF's views answer it (core.api.exception_handler). Outside
        # DRF, this was Django's 500.
        logger.warning("database unavailable: %s", exc)
        return error_response(ServiceUnavailable(DATABASE_UNAVAILABLE, retry_after=1))
    if principal is None:
        return None
    try:
        data = _json_body(request)
    except ValueError:
        return None
    query = tuple(request.GET) if request.META.get("QUERY_STRING") else ()  # no QueryDict built for none
    return Placement(principal=principal, data=data, query=query)


def order_place_hot(request: HttpRequest) -> HttpResponse | None:
    """The answer, or None when the DRF view must answer (see the module's text)."""
    placement = order_place_read(request)
    if not isinstance(placement, Placement):
        return placement
    user_id, mark = placement.principal.user_id, placement.principal.credentials_mark
    try:
        order_request, rate = placement.order_request()
    except Refused as refused:
        return error_response(refused.error, rate=refused.rate)
    try:
        result = order_place_as(user_id=user_id, request=order_request, user_verified=False, credentials_mark=mark)
    except ApplicationError as error:
        return error_response(error, rate=rate)
    return _answer(place_answer(result, user_id=user_id), rate)


async def order_place_hot_async(placement: Placement) -> HttpResponse:
    """order_place_hot's answer on the event loop: the engine's answer awaited."""
    user_id, mark = placement.principal.user_id, placement.principal.credentials_mark
    try:
        order_request, rate = placement.order_request()
    except Refused as refused:
        return error_response(refused.error, rate=refused.rate)
    try:
        result = await order_place_as_async(
            user_id=user_id, request=order_request, user_verified=False, credentials_mark=mark
        )
    except ApplicationError as error:
        return error_response(error, rate=rate)
    if result.body is None:  # a repeated client_order_id: the stored order is read
        response: HttpResponse = await sync_to_async(_stored_answer)(result, user_id=user_id)
        return _answer(response, rate)
    return _answer(place_answer(result, user_id=user_id), rate)


def order_place_prepare(request: HttpRequest) -> FastHandler | None:
    """core.api.fast's door for POST /api/orders; None: the view answers (a signed API key
    reads its key row, which the event loop must not)."""
    if request_principal_reads(request):
        return None
    placement = order_place_read(request)
    if placement is None or isinstance(placement, HttpResponse):
        return None if placement is None else answered(placement)
    return functools.partial(order_place_hot_async, placement)


_RENDERER = JSONRenderer()


def view_response(body: Any, *, status: int, headers: dict[str, str]) -> Response:
    """The answer as an APIView makes it (a DRF Response, which core.api.fast renders as
    Django does: the same headers and counters); `headers` in the order DRF sets them."""
    response = Response(body, status=status, headers=headers)
    response.accepted_renderer = _RENDERER
    response.accepted_media_type = _RENDERER.media_type
    response.renderer_context = {}  # type: ignore[attr-defined]  # set by APIView otherwise
    return response


async def order_cancel_hot_async(principal: Principal, *, order_id: int, allow: str) -> HttpResponse:
    """A bearer token's cancel on the event loop (core.api.fast, orders.api.orders.
    order_cancel_prepare): the engine finds the order, cancels it and answers its body, so
    the web tier reads nothing. `allow`: the Allow header DRF's view adds to its answers."""
    try:
        rate = order_rate_check(user_id=principal.user_id, scope=CANCEL_RATE_SCOPE)
    except Refused as refused:
        return cancel_refused(refused.error, allow=allow, rate=refused.rate)
    try:
        body = await order_cancel_as_async(
            user_id=principal.user_id,
            order_id=order_id,
            user_verified=False,
            credentials_mark=principal.credentials_mark,
        )
    except ApplicationError as error:
        return cancel_refused(error, allow=allow, rate=rate)
    return view_response(body, status=200, headers={"Allow": allow, **_rate_headers(rate)})


def _rate_headers(rate: RateLimit | None) -> dict[str, str]:
    return {} if rate is None else rate.headers()


def cancel_refused(error: ApplicationError, *, allow: str, rate: RateLimit | None = None) -> HttpResponse:
    """As the DRF view refuses (core.api.exception_handler, then RateLimitHeaders): the
    envelope, Retry-After, WWW-Authenticate (every 401), Allow, then the count's RateLimit
    headers (`rate`: a request that was counted; none on a 401, as error_response)."""
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        headers["WWW-Authenticate"] = API_CHALLENGE
    headers["Allow"] = allow
    if error.status != 401:
        headers.update(_rate_headers(rate))
    return view_response(error_body(error.code, error.message, error.fields), status=error.status, headers=headers)
