from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.api.serializers import MarketOutput
from orders.selectors.markets import market_list


class MarketListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: MarketOutput(many=True)})
    def get(self, request: Request) -> Response:
        return Response(MarketOutput(market_list(), many=True).data)
