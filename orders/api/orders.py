from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.pagination import NewestFirstPagination, paginated
from core.api.params import name_param
from core.api.request import request_user
from core.api.schema import error_responses
from core.api.throttling import ResilientScopedRateThrottle
from core.errors import InvalidParameter
from core.text import parse_id
from orders.api.serializers import OrderInput, OrderOutput, UserTradeOutput, user_fill
from orders.engine.requests import OrderRequest
from orders.errors import OrderNotFound
from orders.models import OrderStatus
from orders.selectors.markets import SYMBOL_MAX_LENGTH
from orders.selectors.orders import order_get_for_user, order_list_for_user, trade_list_for_user
from orders.services.orders import order_cancel, order_place


def _order_id(raw: str) -> int:
    order_id = parse_id(raw)
    if order_id is None:
        raise OrderNotFound()
    return order_id


class OrdersApi(APIView):
    throttle_scope = "orders"

    def get_throttles(self) -> list[Any]:
        return [ResilientScopedRateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=[s.value for s in OrderStatus]),
            OpenApiParameter("market", str),
            OpenApiParameter("limit", int),
            OpenApiParameter("cursor", str),
        ],
        responses={200: paginated(OrderOutput)},
        operation_id="orders_list",
    )
    def get(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in set(OrderStatus):
            raise InvalidParameter(fields={"status": [f"One of {', '.join(OrderStatus)}."]})
        market = name_param(request, "market", max_length=SYMBOL_MAX_LENGTH)
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
        },
    )
    def post(self, request: Request) -> Response:
        data = OrderInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = request_user(request)
        result = order_place(user=user, request=OrderRequest(**data.validated_data))
        if result.body is not None:
            return Response(result.body, status=201 if result.created else 200)
        order = order_get_for_user(user_id=user.pk, order_id=result.order_id)
        return Response(OrderOutput(order).data, status=201 if result.created else 200)


class OrderDetailApi(APIView):
    @extend_schema(responses={200: OrderOutput})
    def get(self, request: Request, order_id: str) -> Response:
        order = order_get_for_user(user_id=request_user(request).pk, order_id=_order_id(order_id))
        return Response(OrderOutput(order).data)


class OrderCancelApi(APIView):
    @extend_schema(
        request=None,
        responses={200: OrderOutput, **error_responses(409, s409="`order_not_cancellable`: the order is terminal.")},
    )
    def post(self, request: Request, order_id: str) -> Response:
        user = request_user(request)
        cancelled = order_cancel(user=user, order_id=_order_id(order_id))
        return Response(OrderOutput(order_get_for_user(user_id=user.pk, order_id=cancelled)).data)


class UserTradesApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("market", str), OpenApiParameter("limit", int), OpenApiParameter("cursor", str)],
        responses={200: paginated(UserTradeOutput)},
        operation_id="trades_list",
    )
    def get(self, request: Request) -> Response:
        user = request_user(request)
        paginator = NewestFirstPagination()
        market = name_param(request, "market", max_length=SYMBOL_MAX_LENGTH)
        page = paginator.paginate_queryset(trade_list_for_user(user_id=user.pk, market=market), request, view=self)
        return paginator.get_paginated_response(
            UserTradeOutput([user_fill(t, user.pk) for t in page or []], many=True).data
        )
