"""Read selectors of the revenue app."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone

from core.db import money_sums
from core.fields import MoneyField
from orders.engine import quantize_down
from orders.engine.rates import USD_CURRENCIES
from orders.models import TradeOutbox, TradeOutboxStatus
from orders.selectors.rates import currency_usd_rates
from revenue.delivery.metadata import DeliveryStatus, status_in
from revenue.models import RevenueEvent

# The dollar rule is the orders app's (orders.engine.rates), shared with the house's cap:
# revenue figures and holder shares converted to wei use it from here.
__all__ = [
    "USD_CURRENCIES",
    "currency_usd_rates",
    "holder_share_delivered",
    "post_trade_jobs_stale",
    "post_trade_jobs_untried",
    "revenue_event_exists",
    "stream_usd_sums",
    "stream_usd_totals",
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


def holder_share_delivered() -> Case:
    """An event's holder share once delivered on-chain, else 0 (to sum what holders received)."""
    return Case(
        When(status_in(DeliveryStatus.DELIVERED), then=F("holder_share")),
        default=Value(Decimal(0)),
        output_field=MoneyField(),
    )


def stream_usd_sums(*, events: QuerySet[RevenueEvent], fields: list[str]) -> dict[int, tuple[Decimal, ...]]:
    """Per stream: the sums of `fields` over `events` in US dollars, each currency's sums
    converted at its rate (usd_totals): one grouped query and one for the rates."""
    grouped = money_sums(events, group_by=("stream_id", "currency"), fields=fields)
    rates = currency_usd_rates(currencies={currency for _, currency in grouped})
    per_stream: dict[int, dict[str, tuple[Decimal, ...]]] = {}
    for (stream_id, currency), figures in grouped.items():
        per_stream.setdefault(stream_id, {})[currency] = figures
    return {stream_id: usd_totals(sums=sums, rates=rates) for stream_id, sums in per_stream.items()}


def revenue_event_exists(*, event_id: int) -> bool:
    return RevenueEvent.objects.filter(pk=event_id).exists()


def stream_usd_totals(*, stream_ids: Iterable[int] | None = None) -> dict[int, tuple[Decimal, Decimal]]:
    """Per stream (all, or `stream_ids`): (collected, distributed) in US dollars, the gross of
    its events and the holder share of those delivered on-chain (stream_usd_sums). The
    streams' own `collected` and `distributed` columns add every currency together as it is
    (USDT, ETH and BTC amounts)."""
    events = RevenueEvent.objects.all() if stream_ids is None else RevenueEvent.objects.filter(stream_id__in=stream_ids)
    sums = stream_usd_sums(
        events=events.annotate(holder_delivered=holder_share_delivered()), fields=["gross_amount", "holder_delivered"]
    )
    return {stream_id: (collected, distributed) for stream_id, (collected, distributed) in sums.items()}
