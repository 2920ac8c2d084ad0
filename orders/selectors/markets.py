from __future__ import annotations

from orders.errors import MarketNotFound
from orders.models import Market


def market_list() -> list[Market]:
    return list(Market.objects.filter(is_active=True).select_related("base", "quote").order_by("symbol"))


def market_get(*, symbol: str) -> Market:
    market = Market.objects.select_related("base", "quote").filter(symbol=symbol).first()
    if market is None:
        raise MarketNotFound()
    return market
