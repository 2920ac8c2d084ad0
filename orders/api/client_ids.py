"""GET /api/orders/by-client-id/{client_order_id}: a read-only lookup for bots that keep
their own ids (a module of its own: orders/api/orders.py is the order path's)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.request import request_user
from core.api.schema import error_responses
from orders.api.serializers import OrderOutput
from orders.engine.requests import client_order_id_valid
from orders.errors import OrderNotFound
from orders.selectors.orders import order_get_for_user_by_client_id


class OrderByClientIdApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "client_order_id",
                str,
                OpenApiParameter.PATH,
                description="The id given when placing the order (1 to 64 characters).",
            )
        ],
        responses={200: OrderOutput, **error_responses(404, s404="`order_not_found`: no order of the caller has it.")},
        operation_id="orders_by_client_id",
    )
    def get(self, request: Request, client_order_id: str) -> Response:
        user = request_user(request)
        if not client_order_id_valid(client_order_id):  # no order has it (and PostgreSQL cannot compare a NUL)
            raise OrderNotFound()
        order = order_get_for_user_by_client_id(user_id=user.pk, client_order_id=client_order_id)
        return Response(OrderOutput(order).data)
