from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import bearer_presented, request_principal, request_principal_reads
from core.api.fast import FastHandler, answered, view_in_thread
from core.api.pagination import CURSOR, PAGE_LIMIT, NewestFirstPagination, paginated
from core.api.params import enum_openapi, enum_param, name_param, query_params_known, query_params_refused
from core.api.parsers import ExactJsonParser
from core.api.request import request_user
from core.api.schema import error_responses
from core.api.throttling import RateLimitHeaders, WorkerScopedRateThrottle
from core.errors import ApplicationError
from core.text import parse_id, path_id
from orders.api.hot import CANCEL_RATE_SCOPE, cancel_refused, order_cancel_hot_async, order_place_hot, place_answer
from orders.api.markets import MARKET_FILTER, SYMBOL_FILTER_PATTERN
from orders.api.serializers import (
    CancelAllInput,
    CancelAllOutput,
    OrderInput,
    OrderOutput,
    UserTradeOutput,
    order_output,
)
from orders.engine.requests import order_request_parse
from orders.errors import OrderNotFound
from orders.models import OrderStatus
from orders.selectors.markets import SYMBOL_MAX_LENGTH, market_filter_check
from orders.selectors.orders import order_get_for_user, order_list_for_user, trade_list_for_user, trade_user_fill
from orders.services.orders import order_cancel_as, order_place_as, orders_cancel_all

# What an operation the matching engine answers may get when no engine answers in time
# (orders.sequencer.zmq): the envelope with Retry-After.
MARKET_FILTER_REFUSED = (
    "`invalid_parameter`: a parameter the list does not take or a value it refuses; "
    "`market_not_found`: `market` names no market."
)
ENGINE_UNAVAILABLE = error_responses(
    503,
    s503="`service_unavailable`: the matching engine did not answer in time; `Retry-After` says when to try"
    " again. A placement may have been carried out all the same: send it again with the same"
    " `client_order_id`, or look it up by that id.",
)


class OrdersApi(RateLimitHeaders, APIView):
    """GET: the caller's orders. POST: a placement; with header credentials and a JSON
    body it never reaches this class (orders.api.hot, see as_view), the rest (a session,
    errors of the body's framing) is answered here, with the same order rate."""

    throttle_scope = "orders"
    throttle_classes = [WorkerScopedRateThrottle]
    throttled_methods = frozenset({"POST"})
    parser_classes = [ExactJsonParser]  # amounts as sent: a JSON number is not rounded to a float

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        drf_view = super().as_view(**initkwargs)

        @functools.wraps(drf_view)  # keeps cls, initkwargs and csrf_exempt: the schema still sees this class
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                answered = order_place_hot(request)
                if answered is not None:
                    return answered
            response: HttpResponse = drf_view(request, *args, **kwargs)
            return response

        return view

    @extend_schema(
        parameters=[
            enum_openapi("status", choices=[s.value for s in OrderStatus]),
            MARKET_FILTER,
            PAGE_LIMIT.openapi(),
            CURSOR,
        ],
        responses={200: paginated(OrderOutput), **error_responses(400, s400=MARKET_FILTER_REFUSED)},
        operation_id="orders_list",
        description="The caller's orders, newest first, a page at a time (`next` links the following page).",
    )
    def get(self, request: Request) -> Response:
        query_params_known(request, "status", "market", PAGE_LIMIT.name, CURSOR.name)
        status = enum_param(request, "status", choices=[s.value for s in OrderStatus])
        market = name_param(request, "market", max_length=SYMBOL_MAX_LENGTH, pattern=SYMBOL_FILTER_PATTERN)
        market_filter_check(symbol=market)
        queryset = order_list_for_user(user_id=request_user(request).pk, status=status, market=market)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(OrderOutput(page, many=True).data)

    @extend_schema(
        request=OrderInput,
        responses={
            201: OrderOutput,
            200: OrderOutput,
            **error_responses(409, 429, s409="`duplicate_client_order_id`: the id was used with other parameters."),
            **ENGINE_UNAVAILABLE,
        },
        description="Places an order and answers it as it stands after matching (201). The same"
        " `client_order_id` again with the same parameters answers the order it placed (200).",
    )
    def post(self, request: Request) -> HttpResponse:
        query_params_refused(request)  # the body holds everything (as orders.api.hot.Placement)
        user = request_user(request)
        order_request = order_request_parse(request.data)  # the rules of OrderInput, without its fields
        return place_answer(
            order_place_as(user_id=int(user.pk), request=order_request, user_verified=True), user_id=user.pk
        )


class OrderDetailApi(APIView):
    @extend_schema(responses={200: OrderOutput})
    def get(self, request: Request, order_id: str) -> Response:
        order = order_get_for_user(
            user_id=request_user(request).pk, order_id=path_id(order_id, not_found=OrderNotFound)
        )
        return Response(OrderOutput(order).data)


class OrderCancelApi(RateLimitHeaders, APIView):
    """With a bearer token under ASGI, core.api.fast answers (order_cancel_prepare), with
    the same cancel rate."""

    throttle_scope = CANCEL_RATE_SCOPE
    throttle_classes = [WorkerScopedRateThrottle]

    @extend_schema(
        request=None,
        responses={
            200: OrderOutput,
            **error_responses(409, s409="`order_not_cancellable`: the order is terminal."),
            **ENGINE_UNAVAILABLE,
        },
        description="Cancels one of the caller's live orders (a pending stop too) and answers it.",
    )
    def post(self, request: Request, order_id: str) -> Response:
        user = request_user(request)
        return Response(
            order_cancel_as(
                user_id=int(user.pk), order_id=path_id(order_id, not_found=OrderNotFound), user_verified=True
            )
        )


_cancel_view = OrderCancelApi.as_view()
_CANCEL_ALLOW = ", ".join(OrderCancelApi().allowed_methods)  # what DRF's answers say


def order_cancel_prepare(request: HttpRequest, *, order_id: str) -> FastHandler | None:
    """core.api.fast's door for POST /api/orders/{id}/cancel with a bearer token: verified
    from the token alone, sent to the engine by order id (orders.api.hot), no statement.
    An id that is not one: this view in a worker thread (it authenticates first, as DRF
    does). Anything else (a session, whose middlewares the chain runs; a signed API key)
    goes through the chain."""
    if not bearer_presented(request) or request_principal_reads(request):
        return None
    parsed = parse_id(order_id)
    try:
        principal = request_principal(request)
    except ApplicationError as error:
        return answered(cancel_refused(error, allow=_CANCEL_ALLOW))
    if parsed is None or principal is None or not principal.can_trade:
        return view_in_thread(_cancel_view, request, order_id=order_id)
    return functools.partial(order_cancel_hot_async, principal, order_id=parsed, allow=_CANCEL_ALLOW)


class OrdersCancelAllApi(RateLimitHeaders, APIView):
    throttle_scope = CANCEL_RATE_SCOPE
    throttle_classes = [WorkerScopedRateThrottle]

    @extend_schema(
        request=CancelAllInput,
        responses={200: CancelAllOutput, **error_responses(400), **ENGINE_UNAVAILABLE},
        operation_id="orders_cancel_all",
        description="Cancels every live order of the caller (in `market` when given), pending stops included.",
    )
    def post(self, request: Request) -> Response:
        query_params_refused(request)
        data = CancelAllInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = request_user(request)
        cancelled = orders_cancel_all(user=user, symbol=data.validated_data.get("market") or None)
        orders = {order.pk: order for order in order_list_for_user(user_id=user.pk, order_ids=cancelled)}
        return Response({"cancelled": [order_output(orders[order_id]) for order_id in cancelled]})


class UserTradesApi(APIView):
    @extend_schema(
        parameters=[MARKET_FILTER, PAGE_LIMIT.openapi(), CURSOR],
        responses={200: paginated(UserTradeOutput), **error_responses(400, s400=MARKET_FILTER_REFUSED)},
        operation_id="trades_list",
    )
    def get(self, request: Request) -> Response:
        query_params_known(request, "market", PAGE_LIMIT.name, CURSOR.name)
        user = request_user(request)
        paginator = NewestFirstPagination()
        market = name_param(request, "market", max_length=SYMBOL_MAX_LENGTH, pattern=SYMBOL_FILTER_PATTERN)
        market_filter_check(symbol=market)
        page = paginator.paginate_queryset(trade_list_for_user(user_id=user.pk, market=market), request, view=self)
        return paginator.get_paginated_response(
            UserTradeOutput([trade_user_fill(trade=t, user_id=user.pk) for t in page or []], many=True).data
        )
