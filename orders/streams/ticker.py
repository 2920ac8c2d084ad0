"""The ticker a stream sends: the contract's ticker shape (spec: GET .../ticker)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Max, Min, Sum

from orders.api.serializers import money_text
from orders.models import Market, Trade
from orders.selectors.book import order_book_get
from orders.selectors.orders import trades_since


def market_ticker(*, market_id: int, symbol: str) -> dict[str, Any]:
    """Last price, best bid and ask, and the last 24 hours of trades (four statements)."""
    day = trades_since(market_id=market_id, since_minutes=24 * 60)
    totals = day.aggregate(
        high=Max("price"), low=Min("price"), volume=Sum("quantity"), quote=Sum("quote_amount"), first=Min("id")
    )
    opening = Trade.objects.filter(pk=totals["first"]).values_list("price", flat=True).first()
    last = Market.objects.filter(pk=market_id).values_list("last_price", flat=True).first()
    book = order_book_get(market_id=market_id, depth=1)
    change = None
    if opening and last is not None:
        change = f"{((last - opening) / opening * 100).quantize(Decimal('0.01'))}"
    return {
        "symbol": symbol,
        "last_price": money_text(last),
        "best_bid": money_text(book["bids"][0].price) if book["bids"] else None,
        "best_ask": money_text(book["asks"][0].price) if book["asks"] else None,
        "open_24h": money_text(opening),
        "high_24h": money_text(totals["high"]),
        "low_24h": money_text(totals["low"]),
        "volume_24h": money_text(totals["volume"] or 0),
        "quote_volume_24h": money_text(totals["quote"] or 0),
        "change_24h_percent": change,
    }
