"""US dollar rates of currencies, read from the markets' reference prices (the rule:
orders.engine.rates)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from orders.engine.rates import usd_rate_market, usd_rates
from orders.models import Market


def currency_usd_rates(*, currencies: Iterable[str]) -> dict[str, Decimal]:
    """What one unit of each currency is worth in US dollars: 1 for USD-pegged ones, else the
    reference price of its market against USDT (one query); a currency with no such market
    has no rate (absent from the answer)."""
    wanted = set(currencies)
    markets = {market for currency in wanted if (market := usd_rate_market(currency)) is not None}
    prices: dict[str, Decimal] = {}
    if markets:
        prices = dict(Market.objects.filter(symbol__in=sorted(markets)).values_list("symbol", "reference_price"))
    return usd_rates(currencies=wanted, reference_prices=prices)
