"""The ticker a stream's snapshot sends, from the database: the contract's ticker shape
(spec: GET .../ticker) over the 24 hourly candles up to this hour, as the pages' ticker
and as orders.streams.marketdata keeps it for the updates."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.db import money_totals
from orders.models import Market, Trade
from orders.selectors.book import order_book_get
from orders.selectors.candles import candle_list
from orders.streams.marketdata import HOURS, ticker_body

HOUR = 3600


def market_ticker(*, market_id: int, symbol: str) -> dict[str, Any]:
    """Five statements: the hourly candles (2), their quote volume, the last price, the book top."""
    candles = candle_list(market_id=market_id, interval="1h", limit=HOURS)
    first = datetime.fromtimestamp((int(datetime.now(tz=UTC).timestamp()) // HOUR - HOURS + 1) * HOUR, tz=UTC)
    # Exact on SQLite too, whose SUM of the text amounts is floating point (core.db.money_totals).
    (quote,) = money_totals(Trade.objects.filter(market_id=market_id, executed_at__gte=first), fields=["quote_amount"])
    last = Market.objects.filter(pk=market_id).values_list("last_price", flat=True).first()
    book = order_book_get(market_id=market_id, depth=1)
    return ticker_body(
        symbol=symbol,
        last=last,
        best_bid=book["bids"][0].price if book["bids"] else None,
        best_ask=book["asks"][0].price if book["asks"] else None,
        opening=candles[0].open if candles else None,
        high=max((c.high for c in candles), default=None),
        low=min((c.low for c in candles), default=None),
        volume=sum((c.volume for c in candles), Decimal(0)),
        quote_volume=quote or Decimal(0),
    )
