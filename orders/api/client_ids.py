"""GET /api/orders/by-client-id/{client_order_id}: a read-only lookup for bots that keep
their own ids (a module of its own: orders/api/orders.py is the order path's)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.request import request_user
from core.api.schema import error_responses
from core.text import is_clean_name
from orders.api.serializers import OrderOutput
from orders.errors import OrderNotFound
from orders.models import Order
from orders.selectors.orders import order_get_for_user_by_client_id

CLIENT_ORDER_ID_MAX_LENGTH = Order._meta.get_field("client_order_id").max_length or 0


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
        if not is_clean_name(client_order_id, max_length=CLIENT_ORDER_ID_MAX_LENGTH):
            raise OrderNotFound()
        order = order_get_for_user_by_client_id(user_id=user.pk, client_order_id=client_order_id)
        return Response(OrderOutput(order).data)
