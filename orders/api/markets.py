from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.params import choice_param, int_param
from orders.api.serializers import BookOutput, CandleOutput, MarketOutput, MarketTradeOutput
from orders.selectors.book import order_book_get
from orders.selectors.candles import INTERVALS, candle_list
from orders.selectors.markets import market_get, market_list
from orders.selectors.orders import trade_list_for_market

SYMBOL = OpenApiParameter("symbol", str, OpenApiParameter.PATH, examples=[OpenApiExample("ETH-USDT", value="ETH-USDT")])


class MarketListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: MarketOutput(many=True)})
    def get(self, request: Request) -> Response:
        return Response(MarketOutput(market_list(), many=True).data)


class MarketBookApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(parameters=[SYMBOL, OpenApiParameter("depth", int)], responses={200: BookOutput})
    def get(self, request: Request, symbol: str) -> Response:
        market = market_get(symbol=symbol)
        depth = int_param(request, "depth", default=50, minimum=1, maximum=500)
        return Response(BookOutput({"symbol": market.symbol, **order_book_get(market_id=market.pk, depth=depth)}).data)


class MarketTradesApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(parameters=[SYMBOL, OpenApiParameter("limit", int)], responses={200: MarketTradeOutput(many=True)})
    def get(self, request: Request, symbol: str) -> Response:
        market = market_get(symbol=symbol)
        limit = int_param(request, "limit", default=50, minimum=1, maximum=500)
        return Response(MarketTradeOutput(trade_list_for_market(market_id=market.pk, limit=limit), many=True).data)


class MarketCandlesApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[SYMBOL, OpenApiParameter("interval", str, enum=list(INTERVALS)), OpenApiParameter("limit", int)],
        responses={200: CandleOutput(many=True)},
    )
    def get(self, request: Request, symbol: str) -> Response:
        market = market_get(symbol=symbol)
        interval = choice_param(request, "interval", default="1m", choices=list(INTERVALS))
        limit = int_param(request, "limit", default=100, minimum=1, maximum=1000)
        return Response(CandleOutput(candle_list(market_id=market.pk, interval=interval, limit=limit), many=True).data)
