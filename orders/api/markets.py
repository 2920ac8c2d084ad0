from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.fields import MoneySumOutput
from core.api.params import IntParam, choice_param, pattern_openapi, query_params_known
from orders.api.serializers import BookOutput, CandleOutput, MarketOutput, MarketTradeOutput, money
from orders.selectors.book import order_book_get
from orders.selectors.candles import INTERVALS, candle_list
from orders.selectors.markets import SYMBOL_MAX_LENGTH, market_get, market_list
from orders.selectors.orders import trade_list_for_market
from orders.selectors.tickers import ticker_list

# What a market filter must look like (BASE-QUOTE); the schema states it, the server checks it.
SYMBOL_FILTER_PATTERN = re.compile(r"[A-Za-z0-9._]{1,16}-[A-Za-z0-9._]{1,16}", re.ASCII)
MARKET_FILTER = pattern_openapi(
    "market", pattern=SYMBOL_FILTER_PATTERN, max_length=SYMBOL_MAX_LENGTH, description="A market symbol: ETH-USDT."
)
SYMBOL = OpenApiParameter("symbol", str, OpenApiParameter.PATH, examples=[OpenApiExample("ETH-USDT", value="ETH-USDT")])
DEPTH = IntParam("depth", default=50, minimum=1, maximum=500, description="Price levels per side.")
TRADES_LIMIT = IntParam("limit", default=50, minimum=1, maximum=500, description="How many trades, newest first.")
CANDLES_LIMIT = IntParam(
    "limit",
    default=100,
    minimum=1,
    maximum=1000,
    description="How many intervals, up to the current one: their candles, oldest first. An interval without"
    " a trade has no candle, so fewer than `limit` candles may come (none after `limit` quiet intervals).",
)
INTERVAL = OpenApiParameter(
    "interval", {"type": "string", "enum": list(INTERVALS), "default": "1m"}, OpenApiParameter.QUERY
)


class TickerOutput(serializers.Serializer):
    symbol = serializers.CharField()
    last_price = money(allow_null=True)
    best_bid = money(allow_null=True)
    best_ask = money(allow_null=True)
    open_24h = money(allow_null=True, help_text="The price of the first trade of the last 24 hours.")
    high_24h = money(allow_null=True)
    low_24h = money(allow_null=True)
    volume_24h = MoneySumOutput(help_text="Base quantity traded in the last 24 hours.")
    quote_volume_24h = MoneySumOutput(help_text="Quote amount traded in the last 24 hours.")
    change_24h_percent = serializers.DecimalField(
        max_digits=40,
        decimal_places=2,
        coerce_to_string=True,
        allow_null=True,
        help_text="last_price against open_24h, in percent.",
    )


class MarketListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: MarketOutput(many=True)})
    def get(self, request: Request) -> Response:
        return Response(MarketOutput(market_list(), many=True).data)


class MarketBookApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(parameters=[SYMBOL, DEPTH.openapi()], responses={200: BookOutput})
    def get(self, request: Request, symbol: str) -> Response:
        query_params_known(request, DEPTH.name)
        market = market_get(symbol=symbol)
        depth = DEPTH.read(request)
        return Response(BookOutput({"symbol": market.symbol, **order_book_get(market_id=market.pk, depth=depth)}).data)


class MarketTradesApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(parameters=[SYMBOL, TRADES_LIMIT.openapi()], responses={200: MarketTradeOutput(many=True)})
    def get(self, request: Request, symbol: str) -> Response:
        query_params_known(request, TRADES_LIMIT.name)
        market = market_get(symbol=symbol)
        limit = TRADES_LIMIT.read(request)
        return Response(MarketTradeOutput(trade_list_for_market(market_id=market.pk, limit=limit), many=True).data)


class MarketCandlesApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(parameters=[SYMBOL, INTERVAL, CANDLES_LIMIT.openapi()], responses={200: CandleOutput(many=True)})
    def get(self, request: Request, symbol: str) -> Response:
        query_params_known(request, "interval", CANDLES_LIMIT.name)
        market = market_get(symbol=symbol)
        interval = choice_param(request, "interval", default="1m", choices=list(INTERVALS))
        limit = CANDLES_LIMIT.read(request)
        return Response(CandleOutput(candle_list(market_id=market.pk, interval=interval, limit=limit), many=True).data)


class MarketTickerApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(parameters=[SYMBOL], responses={200: TickerOutput})
    def get(self, request: Request, symbol: str) -> Response:
        (ticker,) = ticker_list(markets=[market_get(symbol=symbol)])
        return Response(TickerOutput(ticker).data)


class TickerListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: TickerOutput(many=True)}, operation_id="tickers_list")
    def get(self, request: Request) -> Response:
        tickers: list[Any] = ticker_list(markets=market_list())
        return Response(TickerOutput(tickers, many=True).data)
