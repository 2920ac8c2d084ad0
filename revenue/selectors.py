"""Read selectors of the revenue app."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from orders.engine import quantize_down
from orders.engine.rates import USD_CURRENCIES
from orders.models import TradeOutbox, TradeOutboxStatus
from orders.selectors.rates import currency_usd_rates

# The dollar rule is the orders app's (orders.engine.rates), shared with the house's cap:
# revenue figures and holder shares converted to wei use it from here.
__all__ = [
    "USD_CURRENCIES",
    "currency_usd_rates",
    "post_trade_jobs_stale",
    "post_trade_jobs_untried",
    "usd_totals",
]


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
