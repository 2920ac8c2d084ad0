"""Reads of the delivery worker."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import F, Max, Q, QuerySet, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from orders.models import Market
from revenue.delivery.transitions import FAILED, PENDING, STATUS_KEY, attempts_expression, iso
from revenue.models import LIVE_BATCH_STATUSES, DeliveryBatch, DeliveryBatchStatus, RevenueEvent


@dataclass(frozen=True, slots=True)
class DeliverableEvent:
    id: int
    stream_id: int
    holder_share: Decimal
    currency: str


def _text(path: str) -> Cast:
    # A plain text comparison (KT alone would take the JSON lookups, which decode the
    # right-hand side); the timestamps are fixed-width UTC, so text order is time order.
    return Cast(KT(path), TextField())


def revenue_events_deliverable_queryset(*, now: datetime, stale_only: bool = False) -> QuerySet[RevenueEvent]:
    """Events to put in the next batch, oldest id first: pending ones, and failed ones
    whose retry is due and whose attempts are not exhausted. ``stale_only`` (the periodic
    re-drive) takes pending events only once nothing touched them for
    DELIVERY_PENDING_STALE_SECONDS: fresh ones belong to the run published with them."""
    pending = Q(delivery_status=PENDING)
    if stale_only:
        stale = now - timedelta(seconds=settings.DELIVERY_PENDING_STALE_SECONDS)
        pending &= Q(created_at__lte=stale) & (Q(last_retry_at__isnull=True) | Q(last_retry_at__lte=iso(stale)))
    due = Q(delivery_status=FAILED, next_retry_at__lte=iso(now), attempts__lt=settings.DELIVERY_MAX_ATTEMPTS)
    return (
        RevenueEvent.objects.alias(
            delivery_status=_text("metadata__onChainDeliveryStatus"),
            next_retry_at=_text("metadata__nextRetryAt"),
            last_retry_at=_text("metadata__lastRetryAt"),
            attempts=attempts_expression(),
        )
        # the partial index's own predicate, so the planner can use revenue_event_redrive
        .filter(**{f"{STATUS_KEY}__in": [PENDING, FAILED]})
        .filter(pending | due)
        .order_by("id")
    )


def revenue_events_deliverable(
    *, now: datetime, limit: int, exclude_ids: Collection[int] = (), stale_only: bool = False
) -> list[DeliverableEvent]:
    if limit <= 0:
        return []
    rows = (
        revenue_events_deliverable_queryset(now=now, stale_only=stale_only)
        .exclude(pk__in=list(exclude_ids))
        .values_list("pk", "stream_id", "holder_share", "currency")[:limit]
    )
    return [DeliverableEvent(id=pk, stream_id=s, holder_share=h, currency=c) for pk, s, h, c in rows]


def delivery_batches_in_flight(*, deployment_id: int) -> list[DeliveryBatch]:
    return list(
        DeliveryBatch.objects.filter(deployment_id=deployment_id, status=DeliveryBatchStatus.SUBMITTED).order_by(
            "first_sequence", "pk"
        )
    )


def delivery_batches_confirmed_beyond(*, deployment_id: int, sequence: int) -> list[DeliveryBatch]:
    """Confirmed batches the contract no longer counts (its next_sequence fell below their end)."""
    return list(
        DeliveryBatch.objects.filter(deployment_id=deployment_id, status=DeliveryBatchStatus.CONFIRMED)
        .alias(end=F("first_sequence") + F("size"))
        .filter(end__gt=sequence)
        .order_by("first_sequence")
    )


def delivery_known_end(*, deployment_id: int) -> int:
    """The end of the sequence range this platform accounts for on a deployment."""
    end = DeliveryBatch.objects.filter(deployment_id=deployment_id, status__in=LIVE_BATCH_STATUSES).aggregate(
        value=Max(F("first_sequence") + F("size"))
    )["value"]
    return int(end or 0)


def in_flight_event_ids(batches: Collection[DeliveryBatch]) -> set[int]:
    return {event_id for batch in batches for event_id in batch.event_ids}


def delivery_price_get() -> Decimal | None:
    """USD per ETH: the reference price of DELIVERY_PRICE_MARKET (ETH-USDT)."""
    price = (
        Market.objects.filter(symbol=settings.DELIVERY_PRICE_MARKET).values_list("reference_price", flat=True).first()
    )
    return Decimal(price) if price is not None else None


def revenue_events_deliverable_exist(*, now: datetime) -> bool:
    return bool(revenue_events_deliverable(now=now, limit=1))
