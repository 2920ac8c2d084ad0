from __future__ import annotations

from core.text import is_clean_name
from orders.errors import MarketNotFound
from orders.models import Market

SYMBOL_MAX_LENGTH = Market._meta.get_field("symbol").max_length or 0


def market_list() -> list[Market]:
    return list(Market.objects.filter(is_active=True).select_related("base", "quote").order_by("symbol"))


def market_get(*, symbol: str) -> Market:
    if not is_clean_name(symbol, max_length=SYMBOL_MAX_LENGTH):  # NUL would reach PostgreSQL as a DataError
        raise MarketNotFound()
    market = Market.objects.select_related("base", "quote").filter(symbol=symbol).first()
    if market is None:
        raise MarketNotFound()
    return market
