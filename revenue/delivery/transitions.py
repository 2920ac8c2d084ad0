"""Every write of the delivery state machine: batches, their events' metadata and the
streams' `distributed` totals change together, in SQL (atomic JSON merges), never by
read-modify-write in Python; `distributed` alone is added to in Python, under the stream
rows' lock, because SQLite's arithmetic on money text is floating point.

Event states (revenue.delivery.metadata.DeliveryStatus):
    pending -> submitted -> delivered
       ^          |  ^          |
       |          v  |          v  (its payment left the canonical chain: back to submitted)
       |        failed ---> critical (attempts exhausted, alerted; staff re-queue)
       +-- (operator fault, superseded deployment, vanished foreign payment)

Which batch paid an event is what the reserve's logs say (revenue.delivery.scan); a batch
never marks delivered an event its mined transaction did not pay.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.metrics import DELIVERIES, DELIVERY_LATENCY_SECONDS
from revenue.alerts import revenue_events_critical_alert
from revenue.chain.client import DeliveryItem
from revenue.delivery.metadata import (
    RETRYABLE_STATUSES,
    DeliveryStatus,
    Key,
    attempts_expression,
    held,
    lookup,
    not_carried,
    not_held,
    patch_amount,
    patch_delivered,
    patch_failed,
    patch_given_up,
    patch_held,
    patch_paid_by,
    patch_released,
    patch_requeued,
    patch_returned,
    patch_submitted,
    patch_tx_hash,
    patch_unconfirmed,
    status_in,
)
from revenue.delivery.selectors import BUNDLE_ITEM_BASE, batch_paid_event_ids, delivery_batch_paying, items_events
from revenue.dispatch import revenue_delivery_dispatch
from revenue.failure_log import delivery_failures_log
from revenue.jsonb import JsonMerge, json_patch_per_row
from revenue.models import DeliveryBatch, DeliveryBatchStatus, RevenueEvent, RevenueStream

logger = logging.getLogger("revenue.delivery")

# What a batch carries: its version mined decides (batch_mined_record).
CARRIED_FIELDS = ("item_ids", "stream_ids", "amounts_wei", "event_ids", "size", "value_wei")

NOT_DELIVERED = (
    DeliveryStatus.PENDING,
    DeliveryStatus.SUBMITTED,
    DeliveryStatus.FAILED,
    DeliveryStatus.CRITICAL,
)


def retry_delay(*, attempts: int) -> timedelta:
    """Exponential backoff: base x 2^attempts (2, 4, 8, 16 minutes with the 60 s default)."""
    return timedelta(seconds=settings.DELIVERY_RETRY_BASE_SECONDS * 2**attempts)


def _events(event_ids: Iterable[int]) -> QuerySet[RevenueEvent]:
    return RevenueEvent.objects.filter(pk__in=list(event_ids))


def _of_batch(batch_id: int) -> dict[str, Any]:
    return {lookup(Key.BATCH_ID): batch_id}


# --------------------------------------------------------------------------- submit


def events_submit(
    *,
    batch: DeliveryBatch,
    now: datetime,
    amounts: dict[int, int] | None = None,
    from_statuses: Sequence[DeliveryStatus] = RETRYABLE_STATUSES,
) -> int:
    """Inside the batch's own transaction: its events are submitted, with the transaction's
    hash and nonce (and, per event, its amount when given). Only events still waiting are
    taken (compare-and-set). Returns how many."""
    common = patch_submitted(batch_id=batch.pk, tx_hash=batch.tx_hashes[-1], nonce=batch.nonce, now=now)
    merged: Any = JsonMerge("metadata", common)
    if amounts:
        merged = JsonMerge(merged, json_patch_per_row({pk: patch_amount(wei) for pk, wei in amounts.items()}))
    return _events(batch.event_ids).filter(status_in(*from_statuses)).update(metadata=merged)


def events_tx_hash_set(*, batch: DeliveryBatch) -> None:
    """After a re-signed version: the events point at the newest transaction of their batch."""
    _events(batch.event_ids).filter(status_in(DeliveryStatus.SUBMITTED), **_of_batch(batch.pk)).update(
        metadata=JsonMerge("metadata", patch_tx_hash(tx_hash=batch.tx_hashes[-1], nonce=batch.nonce))
    )


# --------------------------------------------------------------------------- failure


def events_fail(
    *,
    event_ids: Sequence[int],
    error: str,
    now: datetime,
    from_statuses: Sequence[DeliveryStatus],
    give_up: bool = False,
) -> list[int]:
    """Inside the caller's transaction: one failed attempt for each event (in one of
    ``from_statuses``): one more attempt, its error and the next retry by backoff. At
    DELIVERY_MAX_ATTEMPTS (or with ``give_up``, when retrying cannot help) the event is
    critical (no further automatic retry) and alerted, once. Attempts are counted per
    current value with a compare-and-set, so a concurrent writer can never make an
    attempt count twice. Returns the events that became critical."""
    if not event_ids:
        return []
    selected = _events(event_ids).filter(status_in(*from_statuses))
    failed_rows = list(selected.values_list("pk", "stream_id"))
    current = sorted(set(selected.annotate(attempts=attempts_expression()).values_list("attempts", flat=True)))
    critical: list[int] = []
    failed = 0
    for attempts in current:
        done = attempts + 1
        gives_up = give_up or done >= settings.DELIVERY_MAX_ATTEMPTS
        group = selected.alias(attempts=attempts_expression()).filter(attempts=attempts)
        if gives_up:
            critical.extend(group.values_list("pk", flat=True))
        patch = patch_failed(
            attempts=done, error=error, now=now, next_retry_at=None if gives_up else now + retry_delay(attempts=done)
        )
        failed += group.update(metadata=JsonMerge("metadata", patch))
    if failed:
        DELIVERIES.labels(status=DeliveryStatus.FAILED.value).inc(failed)
        # One line per failure, capped per stream (the seed's rule), not one per batch.
        delivery_failures_log(failures=failed_rows, error=error)
    revenue_events_critical_alert(event_ids=critical, reason=error, now=now)
    return critical


# Failed events one re-drive gives up at most (the rest at the next).
GIVE_UP_BATCH = 500


def events_attempts_exhausted_give_up(*, now: datetime) -> list[int]:
    """Failed events whose attempts reach DELIVERY_MAX_ATTEMPTS (the limit was lowered after
    they failed) are critical and alerted, once: the selection takes failed events only
    below the limit, and an event became critical only by failing once more, so they stayed
    `failed` for ever, a next retry shown in the past, never alerted. Returns them."""
    limit = settings.DELIVERY_MAX_ATTEMPTS
    exhausted = (
        RevenueEvent.objects.filter(status_in(DeliveryStatus.FAILED) & not_carried())
        .alias(attempts=attempts_expression())
        .filter(attempts__gte=limit)
    )
    event_ids = list(exhausted.order_by("id").values_list("pk", flat=True)[:GIVE_UP_BATCH])
    if not event_ids:
        return []
    with transaction.atomic(durable=True):
        given_up = list(exhausted.filter(pk__in=event_ids).values_list("pk", flat=True))
        exhausted.filter(pk__in=given_up).update(metadata=JsonMerge("metadata", patch_given_up()))
        revenue_events_critical_alert(
            event_ids=given_up, reason=f"failed as many times as DELIVERY_MAX_ATTEMPTS ({limit}) allows", now=now
        )
    logger.warning("failed events past the attempt limit given up", extra={"event_ids": given_up[:50]})
    return given_up


def events_return(
    *, event_ids: Sequence[int], from_statuses: Sequence[DeliveryStatus], batch_id: int | None, error: str | None
) -> int:
    """Inside the caller's transaction: back to pending without using an attempt (the
    fault was not theirs). With ``batch_id``, only events that batch still holds."""
    selected = _events(event_ids).filter(status_in(*from_statuses))
    if batch_id is not None:
        selected = selected.filter(**_of_batch(batch_id))
    return selected.update(metadata=JsonMerge("metadata", patch_returned(error=error)))


# --------------------------------------------------------------------------- held for funds


def events_hold(*, errors: Mapping[int, str], cause: str, now: datetime) -> int:
    """Waiting events whose item is more than the signer can pay: left out of every batch
    (their status and attempts kept) with the cause and, per event, what it needs against
    what there is. Returns how many were held."""
    if not errors:
        return 0
    with transaction.atomic(durable=True):
        selected = _events(errors).filter(status_in(DeliveryStatus.PENDING, DeliveryStatus.FAILED) & not_held())
        return selected.filter(not_carried()).update(
            metadata=JsonMerge(
                "metadata",
                json_patch_per_row({pk: patch_held(now=now, cause=cause, error=error) for pk, error in errors.items()}),
            )
        )


def events_release(*, event_ids: Sequence[int]) -> int:
    """Held events whose item fits what the signer can pay again: the next batches take them."""
    if not event_ids:
        return 0
    with transaction.atomic(durable=True):
        return _events(event_ids).filter(held()).update(metadata=JsonMerge("metadata", patch_released()))


# --------------------------------------------------------------------------- batches


@transaction.atomic(durable=True)
def batch_mined_record(
    *,
    batch: DeliveryBatch,
    tx_hash: str,
    nonce: int,
    block_number: int,
    block_hash: str,
    refused_item_ids: list[int],
    amounts: dict[int, int] | None = None,
    paid_items: Sequence[DeliveryItem] | None = None,
) -> None:
    """Its transaction ``tx_hash`` is in the canonical chain (not yet confirmed): the events
    it paid are its own, whatever batch sent them last (``amounts``: what it paid each, for
    a transaction this platform did not build). ``paid_items``: what the reserve's logs say
    that transaction paid. The batch then carries what that version of it carried: an
    earlier version of a rebuilt batch holds items its latest version dropped (those it
    paid are the batch's again), a later one fewer (their events go back to pending)."""
    before = list(batch.event_ids)
    fields: dict[str, Any] = {}
    if paid_items is not None:
        added = _mined_version_carry(batch, tx_hash=tx_hash, paid_items=paid_items, refused=refused_item_ids)
        if added is not None:
            amounts = {**added, **(amounts or {})}
            fields = {name: getattr(batch, name) for name in CARRIED_FIELDS}
        # Items left out of its latest version that the version mined paid are its own again
        # (carried above); the others stay with it until it is confirmed (batch_confirm).
        paid_ids = {item.item_id for item in paid_items}
        left_out = [item for item in batch.left_out_item_ids if int(item) not in paid_ids]
        if left_out != list(batch.left_out_item_ids):
            batch.left_out_item_ids = fields["left_out_item_ids"] = left_out
    DeliveryBatch.objects.filter(pk=batch.pk).update(
        block_number=block_number,
        block_hash=block_hash,
        mined_tx_hash=tx_hash,
        refused_item_ids=refused_item_ids,
        **fields,
    )
    batch.block_number, batch.block_hash, batch.mined_tx_hash = block_number, block_hash, tx_hash
    batch.refused_item_ids = refused_item_ids
    dropped = sorted(set(before) - set(batch.event_ids))
    if dropped:
        events_return(event_ids=dropped, from_statuses=[DeliveryStatus.SUBMITTED], batch_id=batch.pk, error=None)
    paid = batch_paid_event_ids(batch=batch)
    twice = list(
        _events(paid)
        .filter(status_in(DeliveryStatus.DELIVERED))
        .exclude(**_of_batch(batch.pk))
        .values_list("pk", flat=True)
    )
    if twice:
        # The reserve pays an id once; only a superseded deployment's contract can have paid it before.
        logger.error("revenue events paid on two deployments", extra={"batch_id": batch.pk, "event_ids": twice[:50]})
    merged: Any = JsonMerge("metadata", patch_paid_by(batch_id=batch.pk, tx_hash=tx_hash, nonce=nonce))
    if amounts:
        merged = JsonMerge(merged, json_patch_per_row({pk: patch_amount(wei) for pk, wei in amounts.items()}))
    # Usually they are its own already (submitted by it, its latest version mined): no write.
    already = Q(status_in(DeliveryStatus.SUBMITTED), **_of_batch(batch.pk), **{lookup(Key.TX_HASH): tx_hash})
    _events(paid).filter(status_in(*NOT_DELIVERED)).exclude(already).update(metadata=merged)
    _refused_events_to_payer(batch, now=timezone.now())


def _refused_events_to_payer(batch: DeliveryBatch, *, now: datetime) -> None:
    """Events this batch still holds whose items its transaction found paid: their payer
    recorded them before they existed (a transaction of the platform's key paying an id
    ahead of its event). They are the payer's: delivered with it, or when it is."""
    refused = [int(item) for item in batch.refused_item_ids]
    if not refused:
        return
    carried = items_events(item_ids=refused)
    held = set(
        _events([pk for events in carried.values() for pk in events])
        .filter(status_in(DeliveryStatus.SUBMITTED), **_of_batch(batch.pk))
        .values_list("pk", flat=True)
    )
    for item_id, events in carried.items():
        mine = [pk for pk in events if pk in held]
        payer = delivery_batch_paying(deployment_id=batch.deployment_id, item_id=item_id) if mine else None
        if payer is None or payer.pk == batch.pk:
            continue
        logger.error(
            "revenue events were paid before they were recorded: they are their payer's",
            extra={"batch_id": batch.pk, "payer_batch_id": payer.pk, "event_ids": mine[:50]},
        )
        selected = _events(mine).filter(status_in(DeliveryStatus.SUBMITTED), **_of_batch(batch.pk))
        if payer.status != DeliveryBatchStatus.CONFIRMED:
            selected.update(
                metadata=JsonMerge(
                    "metadata", patch_paid_by(batch_id=payer.pk, tx_hash=payer.mined_tx_hash, nonce=payer.nonce)
                )
            )
            continue
        rows = list(selected.values_list("pk", "stream_id", "holder_share"))
        assert payer.block_number is not None  # noqa: S101  (mined: the selector's filter)
        patch = patch_delivered(
            batch_id=payer.pk, tx_hash=payer.mined_tx_hash, nonce=payer.nonce, block_number=payer.block_number,
            block_hash=payer.block_hash, now=now,
        )  # fmt: skip
        _events([row[0] for row in rows]).update(metadata=JsonMerge("metadata", patch))
        _distributed_add(rows, sign=1)
        DELIVERIES.labels(status=DeliveryStatus.DELIVERED.value).inc(len(rows))


def _mined_version_carry(
    batch: DeliveryBatch, *, tx_hash: str, paid_items: Sequence[DeliveryItem], refused: Sequence[int]
) -> dict[int, int] | None:
    """The batch's items become those of its version ``tx_hash`` mined (its Delivered and
    Refused logs), in memory. None when they are the same (the usual case); else the
    amounts of the events it paid that the batch had dropped since (a rebuild without the
    items a foreign payment took, which then vanished)."""
    carried = {item.item_id for item in paid_items} | {int(item) for item in refused}
    kept = [
        (int(item_id), int(stream_id), str(amount))
        for item_id, stream_id, amount in zip(batch.item_ids, batch.stream_ids, batch.amounts_wei, strict=True)
        if int(item_id) in carried
    ]
    known = {item_id for item_id, _, _ in kept}
    added = [item for item in paid_items if item.item_id not in known]
    if len(kept) == len(batch.item_ids) and not added:
        return None
    rows = kept + [(item.item_id, item.stream_id, str(item.amount_wei)) for item in added]
    events = items_events(item_ids=(item_id for item_id, _, _ in rows))
    batch.item_ids = [item_id for item_id, _, _ in rows]
    batch.stream_ids = [stream_id for _, stream_id, _ in rows]
    batch.amounts_wei = [amount for _, _, amount in rows]
    batch.event_ids = [event for item_id, _, _ in rows for event in events[item_id]]
    batch.size = len(rows)
    batch.value_wei = str(sum(int(amount) for _, _, amount in rows))
    logger.warning(
        "the version of a delivery batch mined carries other items than its latest",
        extra={"batch_id": batch.pk, "tx_hash": tx_hash, "items": batch.item_ids[:50]},
    )
    return {item.item_id: item.amount_wei for item in added if item.item_id < BUNDLE_ITEM_BASE}


@transaction.atomic(durable=True)
def batch_confirm(*, batch: DeliveryBatch, nonce: int, now: datetime) -> int:
    """Confirmed: the batch is confirmed, the events its transaction paid are delivered
    and their holder shares added to the streams' `distributed`, all in one transaction.
    Returns the events delivered."""
    claimed = DeliveryBatch.objects.filter(
        pk=batch.pk, status=DeliveryBatchStatus.SUBMITTED, block_number=batch.block_number
    ).update(status=DeliveryBatchStatus.CONFIRMED, confirmed_at=now, last_error="")
    if not claimed:
        return 0
    assert batch.block_number is not None  # noqa: S101  (mined: set by batch_mined_record)
    patch = patch_delivered(
        batch_id=batch.pk,
        tx_hash=batch.mined_tx_hash,
        nonce=nonce,
        block_number=batch.block_number,
        block_hash=batch.block_hash,
        now=now,
    )
    rows = list(
        _events(batch_paid_event_ids(batch=batch))
        .filter(status_in(DeliveryStatus.SUBMITTED), **_of_batch(batch.pk))
        .values_list("pk", "stream_id", "holder_share", "created_at", lookup(Key.CORRELATION_ID))
    )
    _events([row[0] for row in rows]).update(metadata=JsonMerge("metadata", patch))
    _distributed_add(rows, sign=1)
    # Which version of it was mined is known now: what it left out and did not pay goes back.
    _left_out_return(batch, error=None)
    DELIVERIES.labels(status=DeliveryStatus.DELIVERED.value).inc(len(rows))
    for row in rows:
        DELIVERY_LATENCY_SECONDS.observe(max((now - row[3]).total_seconds(), 0))
        # The fee's correlation id, from the order request through its job and event, ends here.
        logger.info(
            "revenue event %s delivered in %s",
            row[0],
            batch.mined_tx_hash,
            extra={
                "correlation_id": row[4] or "-",
                "event_id": row[0],
                "tx_hash": batch.mined_tx_hash,
                "batch_id": batch.pk,
            },
        )
    logger.info(
        "delivery batch confirmed",
        extra={"batch_id": batch.pk, "events": len(rows), "tx_hash": batch.mined_tx_hash},
    )
    return len(rows)


@transaction.atomic(durable=True)
def batch_vanished(*, batch: DeliveryBatch, now: datetime) -> int:
    """Its mined transaction left the canonical chain (a reorg). Ours goes back in flight
    (the transaction manager rebroadcasts or rebuilds it); a foreign one is superseded and
    its events return to pending. Events it had delivered are taken back, `distributed`
    too. Returns the events taken back."""
    was_confirmed = batch.status == DeliveryBatchStatus.CONFIRMED
    DeliveryBatch.objects.filter(pk=batch.pk).update(
        status=DeliveryBatchStatus.SUPERSEDED if batch.foreign else DeliveryBatchStatus.SUBMITTED,
        block_number=None,
        block_hash="",
        mined_tx_hash="",
        refused_item_ids=[],
        confirmed_at=None,
        finalized_at=None,
        last_broadcast_at=None,
        last_error="its transaction left the canonical chain (reorganisation)",
    )
    held = _events(batch.event_ids).filter(**_of_batch(batch.pk))
    rows = list(held.filter(status_in(DeliveryStatus.DELIVERED)).values_list("pk", "stream_id", "holder_share"))
    if batch.foreign:
        held.filter(status_in(*NOT_DELIVERED, DeliveryStatus.DELIVERED)).update(
            metadata=JsonMerge("metadata", patch_returned(now=now))
        )
    else:
        held.filter(status_in(DeliveryStatus.DELIVERED, DeliveryStatus.SUBMITTED)).update(
            metadata=JsonMerge("metadata", patch_unconfirmed(now=now))
        )
    if was_confirmed:
        _distributed_add(rows, sign=-1)
    logger.error(
        "a mined delivery left the canonical chain",
        extra={"batch_id": batch.pk, "foreign": batch.foreign, "confirmed": was_confirmed, "events": len(rows)},
    )
    batch.status = DeliveryBatchStatus.SUPERSEDED if batch.foreign else DeliveryBatchStatus.SUBMITTED
    batch.block_number, batch.block_hash, batch.mined_tx_hash, batch.refused_item_ids = None, "", "", []
    batch.finalized_at = None
    return len(rows)


def batches_finalize(*, deployment_id: int, final_block: int, now: datetime) -> int:
    """Confirmed batches whose blocks are final: no reorg can take their payments back."""
    return DeliveryBatch.objects.filter(
        deployment_id=deployment_id,
        status=DeliveryBatchStatus.CONFIRMED,
        finalized_at__isnull=True,
        block_number__lte=final_block,
    ).update(finalized_at=now)


@transaction.atomic(durable=True)
def batch_fail(*, batch: DeliveryBatch, error: str, now: datetime, operator: bool = False) -> list[int]:
    """Definitively not delivered (reverted, or refused by the node). Its events are
    scheduled for a retry in a new batch: with a failed attempt, or (``operator``: the
    fault was the platform's, e.g. a paused contract) without one. Returns the events that
    became critical."""
    claimed = DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatchStatus.SUBMITTED).update(
        status=DeliveryBatchStatus.FAILED, last_error=error[:2000], block_number=None, block_hash=""
    )
    if not claimed:
        return []
    logger.warning("delivery batch failed", extra={"batch_id": batch.pk, "error": error[:200]})
    _left_out_return(batch, error=error)  # not in the version that failed: no attempt used
    held = list(_events(batch.event_ids).filter(**_of_batch(batch.pk)).values_list("pk", flat=True))
    if operator:
        events_return(event_ids=held, from_statuses=[DeliveryStatus.SUBMITTED], batch_id=batch.pk, error=error)
        return []
    return events_fail(event_ids=held, error=error, now=now, from_statuses=[DeliveryStatus.SUBMITTED])


@transaction.atomic(durable=True)
def batch_supersede(*, batch: DeliveryBatch, reason: str) -> int:
    """It carries nothing any more (every item paid by other transactions): closed; any
    event it still holds returns to pending. Returns those events."""
    claimed = DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatchStatus.SUBMITTED).update(
        status=DeliveryBatchStatus.SUPERSEDED, last_error=reason[:2000]
    )
    if not claimed:
        return 0
    return _left_out_return(batch, error=None) + events_return(
        event_ids=batch.event_ids, from_statuses=[DeliveryStatus.SUBMITTED], batch_id=batch.pk, error=None
    )


def _items_event_ids(item_ids: Iterable[Any]) -> list[int]:
    return [event for events in items_events(item_ids=(int(item) for item in item_ids)).values() for event in events]


def _left_out_return(batch: DeliveryBatch, *, error: str | None) -> int:
    """Inside the caller's transaction, once no version of the batch carrying them can pay
    any more (the version mined confirmed without them, or the batch is closed): the events
    of the items left out of its latest version that it still holds go back to pending, no
    attempt used, and the batch forgets them. Returns how many."""
    left_out = list(batch.left_out_item_ids)
    if not left_out:
        return 0
    DeliveryBatch.objects.filter(pk=batch.pk).update(left_out_item_ids=[])
    batch.left_out_item_ids = []
    returned = events_return(
        event_ids=_items_event_ids(left_out), from_statuses=[DeliveryStatus.SUBMITTED], batch_id=batch.pk, error=error
    )
    if returned:
        logger.info(
            "events left out of a delivery batch's latest version go back to pending",
            extra={"batch_id": batch.pk, "items": left_out[:50], "events": returned},
        )
    return returned


def batch_error_note(*, batch: DeliveryBatch, error: str) -> None:
    DeliveryBatch.objects.filter(pk=batch.pk).update(last_error=error[:2000])


def deployment_batches_supersede(*, deployment_id: int, now: datetime) -> int:
    """Inside the caller's transaction: the unconfirmed batches of a replaced deployment
    can never confirm; their events return to pending (their attempts are kept)."""
    batches = list(
        DeliveryBatch.objects.filter(deployment_id=deployment_id, status=DeliveryBatchStatus.SUBMITTED).values_list(
            "pk", "event_ids", "left_out_item_ids"
        )
    )
    if not batches:
        return 0
    DeliveryBatch.objects.filter(pk__in=[pk for pk, _, _ in batches]).update(
        status=DeliveryBatchStatus.SUPERSEDED, last_error="deployment superseded before confirmation"
    )
    returned = sum(
        events_return(
            event_ids=[*ids, *_items_event_ids(left_out)],
            from_statuses=[DeliveryStatus.SUBMITTED, DeliveryStatus.FAILED],
            batch_id=pk,
            error=None,
        )
        for pk, ids, left_out in batches
    )
    logger.warning("superseded deployment returned events to pending", extra={"events": returned})
    return returned


def _distributed_add(rows: Sequence[tuple[Any, ...]], *, sign: int) -> None:
    """rows: (event id, stream id, holder share, ...). The streams are locked (in id order:
    no deadlock between writers) and their totals added to here, exactly: SQL arithmetic
    would be floating point on SQLite's text columns (15 significant digits)."""
    sums: dict[int, Decimal] = defaultdict(Decimal)
    for _, stream_id, holder_share, *_ in rows:
        sums[stream_id] += holder_share
    if not sums:
        return
    current = dict(
        RevenueStream.objects.select_for_update()
        .filter(pk__in=list(sums))
        .order_by("pk")
        .values_list("pk", "distributed")
    )
    for stream_id, total in sorted(sums.items()):
        RevenueStream.objects.filter(pk=stream_id).update(distributed=current[stream_id] + sign * total)


# --------------------------------------------------------------------------- staff


@transaction.atomic  # not durable: revenue.staff_actions records the audit row in the same transaction
def revenue_event_delivery_retry(*, event_id: int, now: datetime) -> bool:
    """Staff: queue a failed, critical or pending event for delivery again, with a fresh
    attempt budget. Events in flight or delivered are left alone. Returns whether it was queued."""
    queued = (
        RevenueEvent.objects.filter(pk=event_id)
        .filter(status_in(*RETRYABLE_STATUSES))
        .update(metadata=JsonMerge("metadata", patch_requeued(now=now)))
    )
    if queued:
        transaction.on_commit(revenue_delivery_dispatch)
    return bool(queued)


@transaction.atomic  # not durable: revenue.staff_actions records the audit row in the same transaction
def batch_abandon(*, batch_id: int, tx_hashes: Sequence[str], error: str) -> int | None:
    """Staff, once the chain showed that no version of the batch can pay (revenue.delivery.
    abandon): the batch is abandoned and the events it still holds return to pending, no
    attempt used, and a delivery run is published. Only while it is exactly as checked: in
    flight, not seen mined, no version signed since (``tx_hashes``). Returns the events
    returned, or None when the batch changed meanwhile (nothing written)."""
    batch = DeliveryBatch.objects.select_for_update().filter(pk=batch_id).first()
    if (
        batch is None
        or batch.status != DeliveryBatchStatus.SUBMITTED
        or batch.block_number is not None
        or list(batch.tx_hashes) != list(tx_hashes)
    ):
        return None
    DeliveryBatch.objects.filter(pk=batch_id).update(status=DeliveryBatchStatus.ABANDONED, last_error=error[:2000])
    returned = _left_out_return(batch, error=error) + events_return(
        event_ids=batch.event_ids, from_statuses=[DeliveryStatus.SUBMITTED], batch_id=batch_id, error=error
    )
    logger.warning("delivery batch abandoned by staff", extra={"batch_id": batch_id, "events": returned})
    transaction.on_commit(revenue_delivery_dispatch)
    return returned
