from __future__ import annotations

from core.text import is_clean_name
from orders.errors import MarketNotFound, MarketNotFoundInRequest
from orders.models import Market

SYMBOL_MAX_LENGTH = Market._meta.get_field("symbol").max_length or 0


def market_list(*, include_inactive: bool = False) -> list[Market]:
    """Markets taking orders; with include_inactive, also those staff deactivated (a trader's
    history still has orders in them)."""
    markets = Market.objects.all() if include_inactive else Market.objects.filter(is_active=True)
    return list(markets.select_related("base", "quote").order_by("symbol"))


def market_get(*, symbol: str) -> Market:
    if not is_clean_name(symbol, max_length=SYMBOL_MAX_LENGTH):  # NUL would reach PostgreSQL as a DataError
        raise MarketNotFound()
    market = Market.objects.select_related("base", "quote").filter(symbol=symbol).first()
    if market is None:
        raise MarketNotFound()
    return market


def market_filter_check(*, symbol: str | None) -> None:
    """A list's `market` filter names a market that exists (active or not: a trader's
    history keeps orders in deactivated ones); 400 market_not_found otherwise, rather than
    an empty page that reads as "no orders there"."""
    if symbol is not None and not Market.objects.filter(symbol=symbol).exists():
        raise MarketNotFoundInRequest(fields={"market": ["No such market."]})
