"""What one unit of a currency is worth in US dollars on the platform: the one rule behind
the house's cap on every market (orders.engine.pricing.house_max_notional, fed by the
sequencer) and revenue's and the flywheel's dollar figures
(orders.selectors.rates.currency_usd_rates).

USD, USDT and USDC count one for one; another currency C at the reference price of the
market `C-USDT`; a currency with no such market has no dollar rate. Pure: the reference
prices are the caller's (read from the database)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

# Currencies counted as US dollars one for one.
USD_CURRENCIES = frozenset({"USD", "USDT", "USDC"})
USD_QUOTE = "USDT"  # another currency C is valued at the reference price of the market C-USDT
_ONE = Decimal(1)


def usd_rate_market(currency: str) -> str | None:
    """The symbol of the market whose reference price is `currency`'s dollar rate, or None
    for a USD-pegged currency (worth 1)."""
    if currency.upper() in USD_CURRENCIES:
        return None
    return f"{currency}-{USD_QUOTE}"


def usd_rates(*, currencies: Iterable[str], reference_prices: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Each currency's dollar rate: 1 for a USD-pegged one, else the reference price of its
    usd_rate_market found in `reference_prices` (by market symbol). A currency whose market
    is not there has no rate (absent from the answer)."""
    rates: dict[str, Decimal] = {}
    for currency in currencies:
        market = usd_rate_market(currency)
        if market is None:
            rates[currency] = _ONE
        elif market in reference_prices:
            rates[currency] = reference_prices[market]
    return rates
