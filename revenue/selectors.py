"""Read selectors of the revenue app."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from orders.engine import quantize_down
from orders.models import Market, TradeOutbox, TradeOutboxStatus

# Currencies counted as US dollars one for one (revenue figures, holder shares converted to wei).
USD_CURRENCIES = frozenset({"USD", "USDT", "USDC"})
USD_QUOTE = "USDT"  # another currency C is valued at the reference price of the market C-USDT


def post_trade_jobs_stale(*, older_than_seconds: int, limit: int) -> list[int]:
    """Trades in orders' outbox whose task apparently never ran (broker down, worker killed)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        TradeOutbox.objects.filter(status=TradeOutboxStatus.PENDING, created_at__lte=cutoff)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def post_trade_jobs_untried(*, limit: int) -> list[int]:
    """Pending jobs no task has tried yet, oldest first (a job that failed waits for the
    sweep, so that one bad job is not retried by every publication)."""
    return list(
        TradeOutbox.objects.filter(status=TradeOutboxStatus.PENDING, attempts=0)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def currency_usd_rates(*, currencies: Iterable[str]) -> dict[str, Decimal]:
    """What one unit of each currency is worth in US dollars: 1 for USD-pegged ones, else the
    reference price of its market against USDT (one query); a currency with no such market
    has no rate (absent from the answer)."""
    wanted = set(currencies)
    rates = {currency: Decimal(1) for currency in wanted if currency.upper() in USD_CURRENCIES}
    markets = {f"{currency}-{USD_QUOTE}": currency for currency in wanted - set(rates)}
    if markets:
        for symbol, price in Market.objects.filter(symbol__in=list(markets)).values_list("symbol", "reference_price"):
            rates[markets[symbol]] = price
    return rates


def usd_totals(*, sums: dict[str, tuple[Decimal, ...]], rates: dict[str, Decimal] | None = None) -> tuple[Decimal, ...]:
    """Per-currency sums (currency -> figures) as US dollar totals, figure by figure: each
    currency's at its rate (currency_usd_rates unless given), rounded down to 8 places; a
    currency with no rate is left out. An empty tuple for no sums."""
    rates = currency_usd_rates(currencies=sums) if rates is None else rates
    width = len(next(iter(sums.values()), ()))
    totals = [Decimal(0)] * width
    for currency, figures in sums.items():
        rate = rates.get(currency)
        if rate is None:
            continue
        for index, value in enumerate(figures):
            totals[index] += value if rate == 1 else quantize_down(value * rate)
    return tuple(totals)
