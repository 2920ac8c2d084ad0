"""Reads of the delivery worker."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, QuerySet

from revenue.delivery.metadata import (
    DeliveryStatus,
    Key,
    attempts_expression,
    carried,
    held,
    iso,
    lookup,
    not_carried,
    not_held,
    status_in,
    text_cast,
)
from revenue.models import DeliveryBatch, DeliveryBatchStatus, DeliveryBundle, RevenueEvent

# On-chain ids of dust bundles: above every revenue event id (a bigint), so never one of them.
BUNDLE_ITEM_BASE = 2**64


@dataclass(frozen=True, slots=True)
class DeliverableEvent:
    id: int
    stream_id: int
    holder_share: Decimal
    currency: str
    bundle_id: int | None
    # Signed before as an item of its own (its amount was recorded): that id may still be
    # paid by those bytes, so it is never made dust of a bundle (another id) afterwards.
    signed_alone: bool = False


def revenue_events_deliverable_queryset(*, now: datetime, stale_only: bool = False) -> QuerySet[RevenueEvent]:
    """Events to put in the next batch, oldest id first: pending ones (not carried forward
    as dust), and failed ones whose retry is due and whose attempts are not exhausted; none
    held (their share is more than the signer can pay: revenue_events_held).
    ``stale_only`` (the periodic re-drive) takes pending events only once nothing touched
    them for DELIVERY_PENDING_STALE_SECONDS: fresh ones belong to the run published with them."""
    # Each branch names its status with the key lookup of revenue_event_redrive's predicate
    # (status in WAITING_STATUSES, not carried): the planner proves the index from them. The
    # status is spelled once per branch: the predicate repeated on top (or a ->> text test
    # beside it) made the planner multiply two estimates of the same test, expect ~20 rows
    # for ~10,000 and sort them all instead of walking the index in id order for one batch.
    pending = status_in(DeliveryStatus.PENDING)
    if stale_only:
        stale = now - timedelta(seconds=settings.DELIVERY_PENDING_STALE_SECONDS)
        pending &= Q(created_at__lte=stale) & (Q(last_retry_at__isnull=True) | Q(last_retry_at__lte=iso(stale)))
    due = status_in(DeliveryStatus.FAILED) & Q(next_retry_at__lte=iso(now), attempts__lt=settings.DELIVERY_MAX_ATTEMPTS)
    return (
        RevenueEvent.objects.alias(
            next_retry_at=text_cast(Key.NEXT_RETRY_AT),
            last_retry_at=text_cast(Key.LAST_RETRY_AT),
            attempts=attempts_expression(),
        )
        .filter(not_carried() & not_held() & (pending | due))
        .order_by("id")
    )


def revenue_events_deliverable(
    *, now: datetime, limit: int, exclude_ids: Collection[int] = (), stale_only: bool = False
) -> list[DeliverableEvent]:
    if limit <= 0:
        return []
    columns = ("pk", "stream_id", "holder_share", "currency", lookup(Key.BUNDLE_ID), lookup(Key.AMOUNT_WEI))
    rows = (
        revenue_events_deliverable_queryset(now=now, stale_only=stale_only)
        .exclude(pk__in=list(exclude_ids))
        .values_list(*columns)[:limit]
    )
    return [
        DeliverableEvent(id=pk, stream_id=s, holder_share=h, currency=c, bundle_id=b, signed_alone=a is not None)
        for pk, s, h, c, b, a in rows
    ]


# Held events one batch looks at for those that fit again (their partial index, oldest
# first): a hold is for a share the balance cannot pay, a few at a time; those past this
# many are looked at as the first ones are paid.
HELD_READ = 4 * 256


def revenue_events_held(*, limit: int = HELD_READ) -> list[DeliverableEvent]:
    """Events held because their share is more than the signer can pay, oldest first."""
    columns = ("pk", "stream_id", "holder_share", "currency", lookup(Key.BUNDLE_ID), lookup(Key.AMOUNT_WEI))
    rows = (
        RevenueEvent.objects.filter(status_in(DeliveryStatus.PENDING, DeliveryStatus.FAILED) & held())
        .order_by("id")
        .values_list(*columns)[:limit]
    )
    return [
        DeliverableEvent(id=pk, stream_id=s, holder_share=h, currency=c, bundle_id=b, signed_alone=a is not None)
        for pk, s, h, c, b, a in rows
    ]


def revenue_events_deliverable_exist(*, now: datetime) -> bool:
    return bool(revenue_events_deliverable(now=now, limit=1))


def carried_dust(*, stream_ids: Iterable[int] | None = None) -> dict[int, list[tuple[int, int, str]]]:
    """Dust carried forward, per stream: (event id, amount in wei, carried since), oldest first."""
    rows = RevenueEvent.objects.filter(status_in(DeliveryStatus.PENDING) & carried())
    if stream_ids is not None:
        rows = rows.filter(stream_id__in=list(stream_ids))
    found: dict[int, list[tuple[int, int, str]]] = {}
    for pk, stream_id, amount, since in rows.order_by("stream_id", "id").values_list(
        "pk", "stream_id", lookup(Key.AMOUNT_WEI), lookup(Key.CARRIED_AT)
    ):
        found.setdefault(stream_id, []).append((pk, int(amount), str(since)))
    return found


def delivery_batches_in_flight(*, deployment_id: int) -> list[DeliveryBatch]:
    """Batches not yet confirmed (maybe mined), lowest nonce first."""
    return list(
        DeliveryBatch.objects.filter(deployment_id=deployment_id, status=DeliveryBatchStatus.SUBMITTED).order_by(
            "nonce", "pk"
        )
    )


def delivery_batches_mined_unconfirmed(*, deployment_id: int) -> list[DeliveryBatch]:
    """Batches mined in the canonical chain, not yet CHAIN_CONFIRMATIONS deep."""
    return list(
        DeliveryBatch.objects.filter(
            deployment_id=deployment_id, status=DeliveryBatchStatus.SUBMITTED, block_number__isnull=False
        ).order_by("block_number", "pk")
    )


def delivery_batches_not_final(*, deployment_id: int) -> list[DeliveryBatch]:
    """Batches whose payment may still leave the canonical chain: mined or confirmed, not
    final (read in full only when a reorg was detected: they can be many)."""
    return list(
        DeliveryBatch.objects.filter(
            deployment_id=deployment_id,
            status__in=[DeliveryBatchStatus.SUBMITTED, DeliveryBatchStatus.CONFIRMED],
            block_number__isnull=False,
            finalized_at__isnull=True,
        ).order_by("block_number", "pk")
    )


def delivery_batches_mined_since(*, deployment_id: int, block_number: int) -> list[DeliveryBatch]:
    """Every batch whose payment is recorded at or above ``block_number``, final or not:
    what a node back from older state (finality broken) may have lost."""
    return list(
        DeliveryBatch.objects.filter(
            deployment_id=deployment_id,
            status__in=[DeliveryBatchStatus.SUBMITTED, DeliveryBatchStatus.CONFIRMED],
            block_number__gte=block_number,
        ).order_by("block_number", "pk")
    )


def delivery_batch_final_latest(*, deployment_id: int) -> DeliveryBatch | None:
    """The batch in the highest block the platform saw final."""
    return (
        DeliveryBatch.objects.filter(
            deployment_id=deployment_id, status=DeliveryBatchStatus.CONFIRMED, finalized_at__isnull=False
        )
        .order_by("-block_number", "-pk")
        .first()
    )


def delivery_batch_by_tx_hash(*, deployment_id: int, tx_hash: str) -> DeliveryBatch | None:
    """The batch one of whose signed versions is ``tx_hash`` (any status)."""
    candidates = DeliveryBatch.objects.filter(deployment_id=deployment_id, tx_hashes__icontains=tx_hash)
    return next((batch for batch in candidates if tx_hash in batch.tx_hashes), None)


def delivery_batch_paying(*, deployment_id: int, item_id: int) -> DeliveryBatch | None:
    """The mined batch whose transaction paid ``item_id`` (its item and not refused), if any."""
    candidates = DeliveryBatch.objects.filter(
        deployment_id=deployment_id,
        block_number__isnull=False,
        status__in=[DeliveryBatchStatus.SUBMITTED, DeliveryBatchStatus.CONFIRMED],
        item_ids__icontains=str(item_id),
    ).order_by("block_number")
    return next(
        (b for b in candidates if item_id in {int(i) for i in b.item_ids} - {int(i) for i in b.refused_item_ids}),
        None,
    )


def in_flight_event_ids(*, batches: Collection[DeliveryBatch]) -> set[int]:
    return {event_id for batch in batches for event_id in batch.event_ids}


def bundle_item_id(*, bundle_id: int) -> int:
    return BUNDLE_ITEM_BASE + bundle_id


def items_events(*, item_ids: Iterable[int]) -> dict[int, list[int]]:
    """The revenue events each on-chain item carries (a bundle's events, or the event itself)."""
    items = list(item_ids)
    bundles = {item - BUNDLE_ITEM_BASE for item in items if item >= BUNDLE_ITEM_BASE}
    members = dict(DeliveryBundle.objects.filter(pk__in=bundles).values_list("pk", "event_ids")) if bundles else {}
    return {
        item: ([int(e) for e in members.get(item - BUNDLE_ITEM_BASE, [])] if item >= BUNDLE_ITEM_BASE else [item])
        for item in items
    }


def batch_paid_event_ids(*, batch: DeliveryBatch) -> list[int]:
    """The events its mined transaction paid: every item it carries but those it found paid."""
    refused = {int(item) for item in batch.refused_item_ids}
    paid_items = [int(item) for item in batch.item_ids if int(item) not in refused]
    return [event for events in items_events(item_ids=paid_items).values() for event in events]


def delivery_batches_stuck(*, older_than: datetime) -> list[DeliveryBatch]:
    """Batches in flight, not mined, since before ``older_than``."""
    return list(
        DeliveryBatch.objects.filter(
            status=DeliveryBatchStatus.SUBMITTED, block_number__isnull=True, submitted_at__lt=older_than
        ).order_by("pk")
    )


def delivery_batch_gas_typical() -> int | None:
    """The most gas one of the last batches was given: what the next full batch needs."""
    gas = list(DeliveryBatch.objects.filter(foreign=False).order_by("-pk").values_list("gas", flat=True)[:10])
    return max(gas) if gas else None
