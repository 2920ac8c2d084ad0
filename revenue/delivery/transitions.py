"""Every write of the delivery state machine: batches, their events' metadata and the
streams' `distributed` totals change together, in SQL (atomic JSON merges, F() updates),
never by read-modify-write in Python.

Event states (metadata.onChainDeliveryStatus):
    pending -> submitted -> delivered
                  |  ^           |
                  v  |           v  (a reorg deeper than the confirmations: back to submitted)
                failed ---> (critical: attempts exhausted, alerted once)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, IntegerField, Q, QuerySet, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from core.metrics import DELIVERIES, DELIVERY_LATENCY_SECONDS
from revenue.alerts import revenue_event_critical_alert
from revenue.failure_log import delivery_failures_log
from revenue.jsonb import JsonMerge, json_patch_per_row
from revenue.models import DeliveryBatch, DeliveryBatchStatus, RevenueEvent, RevenueStream

logger = logging.getLogger("revenue.delivery")

PENDING = "pending"
SUBMITTED = "submitted"
DELIVERED = "delivered"
FAILED = "failed"
STATUS_KEY = "metadata__onChainDeliveryStatus"


def iso(moment: datetime) -> str:
    """Fixed-width UTC timestamps, so that comparing the strings in SQL compares the times."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def attempts_expression() -> Cast:
    return Cast(Coalesce(KT("metadata__retryAttempts"), Value("0")), IntegerField())


def retry_delay(*, attempts: int) -> timedelta:
    """Exponential backoff: base x 2^attempts (2, 4, 8, 16 minutes with the 60 s default)."""
    return timedelta(seconds=settings.DELIVERY_RETRY_BASE_SECONDS * 2**attempts)


def _events(event_ids: Iterable[int]) -> QuerySet[RevenueEvent]:
    return RevenueEvent.objects.filter(pk__in=list(event_ids))


# --------------------------------------------------------------------------- submit


def events_submit(*, batch: DeliveryBatch, now: datetime, from_statuses: Sequence[str] = (PENDING, FAILED)) -> int:
    """Inside the batch's own transaction: every event gets its sequence, amount and the
    transaction's hash and nonce. Only events still waiting are taken (compare-and-set)."""
    common = {
        "onChainDeliveryStatus": SUBMITTED,
        "txHash": batch.tx_hashes[-1],
        "nonce": batch.nonce,
        "batchId": batch.pk,
        "lastRetryAt": iso(now),
        "nextRetryAt": None,
    }
    per_event = {
        event_id: {"sequence": batch.first_sequence + index, "amountWei": batch.amounts_wei[index]}
        for index, event_id in enumerate(batch.event_ids)
    }
    return (
        _events(batch.event_ids)
        .filter(**{f"{STATUS_KEY}__in": list(from_statuses)})
        .update(metadata=JsonMerge(JsonMerge("metadata", common), json_patch_per_row(per_event)))
    )


def events_tx_hash_set(*, batch: DeliveryBatch) -> None:
    """After a replacement: the events point at the newest transaction of their batch."""
    _events(batch.event_ids).filter(**{STATUS_KEY: SUBMITTED}).update(
        metadata=JsonMerge("metadata", {"txHash": batch.tx_hashes[-1], "nonce": batch.nonce})
    )


# --------------------------------------------------------------------------- failure


def events_fail(
    *, event_ids: Sequence[int], error: str, now: datetime, from_statuses: Sequence[str], give_up: bool = False
) -> list[int]:
    """Inside the caller's transaction: one failed attempt for each event (in one of
    ``from_statuses``): retryAttempts + 1, lastError and the next retry by backoff. Past
    DELIVERY_MAX_ATTEMPTS (or with ``give_up``, when retrying cannot help) the event is
    critical (no further automatic retry) and alerted once. Attempts are counted per
    current value with a compare-and-set, so a concurrent writer can never make an
    attempt count twice. Returns the events that became critical."""
    if not event_ids:
        return []
    error = error[:2000]
    selected = _events(event_ids).filter(**{f"{STATUS_KEY}__in": list(from_statuses)})
    failed_rows = list(selected.values_list("pk", "stream_id"))
    current = sorted(set(selected.annotate(attempts=attempts_expression()).values_list("attempts", flat=True)))
    critical: list[int] = []
    failed = 0
    for attempts in current:
        done = attempts + 1
        patch: dict[str, Any] = {
            "onChainDeliveryStatus": FAILED,
            "retryAttempts": done,
            "lastError": error,
            "lastFailedAt": iso(now),
        }
        group = selected.alias(attempts=attempts_expression()).filter(attempts=attempts)
        if give_up or done >= settings.DELIVERY_MAX_ATTEMPTS:
            patch.update(critical=True, nextRetryAt=None)
            critical.extend(group.values_list("pk", flat=True))
        else:
            patch["nextRetryAt"] = iso(now + retry_delay(attempts=done))
        failed += group.update(metadata=JsonMerge("metadata", patch))
    if failed:
        DELIVERIES.labels(status=FAILED).inc(failed)
        # One line per failure, capped per stream (the seed's rule), not one per batch.
        delivery_failures_log(failures=failed_rows, error=error)
    for event_id in critical:
        revenue_event_critical_alert(event_id=event_id, reason=error)
    return critical


# --------------------------------------------------------------------------- batches


def batch_mined_record(*, batch: DeliveryBatch, tx_hash: str, block_number: int | None) -> None:
    """Mined (or no longer mined after a shallow reorg: ``block_number=None``), not yet final."""
    if batch.block_number == block_number and (batch.mined_tx_hash == tx_hash or block_number is None):
        return
    DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatchStatus.SUBMITTED).update(
        block_number=block_number, mined_tx_hash=tx_hash if block_number is not None else ""
    )
    batch.block_number = block_number
    batch.mined_tx_hash = tx_hash if block_number is not None else ""


@transaction.atomic(durable=True)
def batch_confirm(*, batch: DeliveryBatch, tx_hash: str, nonce: int, block_number: int, now: datetime) -> int:
    """Final: the batch is confirmed, its events delivered and their holder shares added to
    the streams' `distributed`, all in one transaction. Returns the events delivered."""
    claimed = DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatchStatus.SUBMITTED).update(
        status=DeliveryBatchStatus.CONFIRMED,
        confirmed_at=now,
        block_number=block_number,
        mined_tx_hash=tx_hash,
        last_error="",
    )
    if not claimed:
        return 0
    patch = {
        "onChainDeliveryStatus": DELIVERED,
        "txHash": tx_hash,
        "nonce": nonce,
        "blockNumber": block_number,
        "deliveredAt": iso(now),
        "batchId": batch.pk,
        "lastError": None,
        "nextRetryAt": None,
        "critical": None,
    }
    rows = list(
        _events(batch.event_ids)
        .exclude(**{STATUS_KEY: DELIVERED})
        .values_list("pk", "stream_id", "holder_share", "created_at", "metadata__correlationId")
    )
    twice = sorted(set(batch.event_ids) - {row[0] for row in rows})
    if twice:
        # Only possible if another sender paid these events in an earlier sequence range.
        logger.error("revenue events delivered twice on-chain", extra={"batch_id": batch.pk, "event_ids": twice[:50]})
        for event_id in twice:
            revenue_event_critical_alert(event_id=event_id, reason=f"delivered twice on-chain (batch {batch.pk})")
    _events([row[0] for row in rows]).update(metadata=JsonMerge("metadata", patch))
    _distributed_add(rows, sign=1)
    DELIVERIES.labels(status=DELIVERED).inc(len(rows))
    for row in rows:
        DELIVERY_LATENCY_SECONDS.observe(max((now - row[3]).total_seconds(), 0))
        # The fee's correlation id, from the order request through its job and event, ends here.
        logger.info(
            "revenue event %s delivered in %s",
            row[0],
            tx_hash,
            extra={"correlation_id": row[4] or "-", "event_id": row[0], "tx_hash": tx_hash, "batch_id": batch.pk},
        )
    logger.info(
        "delivery batch confirmed",
        extra={"batch_id": batch.pk, "events": len(rows), "tx_hash": tx_hash, "block_number": block_number},
    )
    return len(rows)


@transaction.atomic(durable=True)
def batch_unconfirm(*, batch: DeliveryBatch, now: datetime) -> int:
    """A reorg deeper than CHAIN_CONFIRMATIONS removed a confirmed batch: back in flight,
    its events back to submitted and `distributed` reduced. The contract's sequence check
    still guarantees it is paid exactly once when it is mined again."""
    claimed = DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatchStatus.CONFIRMED).update(
        status=DeliveryBatchStatus.SUBMITTED,
        confirmed_at=None,
        block_number=None,
        mined_tx_hash="",
        last_broadcast_at=None,
        last_error="removed from the chain by a reorganisation deeper than the confirmations",
    )
    if not claimed:
        return 0
    rows = list(
        _events(batch.event_ids)
        .filter(**{STATUS_KEY: DELIVERED})
        .values_list("pk", "stream_id", "holder_share", "created_at")
    )
    _events([row[0] for row in rows]).update(
        metadata=JsonMerge(
            "metadata",
            {
                "onChainDeliveryStatus": SUBMITTED,
                "deliveredAt": None,
                "blockNumber": None,
                "reorgedAt": iso(now),
            },
        )
    )
    _distributed_add(rows, sign=-1)
    logger.error("confirmed delivery batch removed by a deep reorg", extra={"batch_id": batch.pk})
    return len(rows)


@transaction.atomic(durable=True)
def batch_fail(*, batch: DeliveryBatch, error: str, now: datetime) -> list[int]:
    """Definitively not delivered (reverted, or refused by the node): the batch is failed
    and its events are scheduled for a retry in a new batch."""
    claimed = DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatchStatus.SUBMITTED).update(
        status=DeliveryBatchStatus.FAILED, last_error=error[:2000], block_number=None
    )
    if not claimed:
        return []
    # Events whose broadcast failure already counted this attempt keep their schedule.
    critical = events_fail(event_ids=batch.event_ids, error=error, now=now, from_statuses=[SUBMITTED])
    logger.warning("delivery batch failed", extra={"batch_id": batch.pk, "error": error[:200]})
    return critical


def batch_error_note(*, batch: DeliveryBatch, error: str) -> None:
    DeliveryBatch.objects.filter(pk=batch.pk).update(last_error=error[:2000])


def deployment_batches_supersede(*, deployment_id: int, now: datetime) -> int:
    """Inside the caller's transaction: the unconfirmed batches of a replaced deployment
    can never confirm; their events return to pending (their attempts are kept)."""
    batches = list(
        DeliveryBatch.objects.filter(deployment_id=deployment_id, status=DeliveryBatchStatus.SUBMITTED).values_list(
            "pk", "event_ids"
        )
    )
    if not batches:
        return 0
    DeliveryBatch.objects.filter(pk__in=[pk for pk, _ in batches]).update(
        status=DeliveryBatchStatus.SUPERSEDED, last_error="deployment superseded before confirmation"
    )
    event_ids = [event_id for _, ids in batches for event_id in ids]
    returned = (
        _events(event_ids)
        .filter(**{f"{STATUS_KEY}__in": [SUBMITTED, FAILED]})
        .update(
            metadata=JsonMerge(
                "metadata",
                {
                    "onChainDeliveryStatus": PENDING,
                    "txHash": None,
                    "nonce": None,
                    "sequence": None,
                    "amountWei": None,
                    "batchId": None,
                    "nextRetryAt": None,
                },
            )
        )
    )
    logger.warning("superseded deployment returned events to pending", extra={"events": returned})
    return returned


def _distributed_add(rows: Sequence[tuple[Any, ...]], *, sign: int) -> None:
    """rows: (event id, stream id, holder share, ...)."""
    sums: dict[int, Decimal] = defaultdict(Decimal)
    for _, stream_id, holder_share, *_ in rows:
        sums[stream_id] += holder_share
    for stream_id, total in sorted(sums.items()):  # fixed order: no deadlock between writers
        RevenueStream.objects.filter(pk=stream_id).update(distributed=F("distributed") + sign * total)


# --------------------------------------------------------------------------- staff


@transaction.atomic(durable=True)
def revenue_event_delivery_retry(*, event_id: int, now: datetime) -> bool:
    """Staff: queue a failed (or critical) event for delivery again, with a fresh attempt
    budget. Events in flight or delivered are left alone. Returns whether it was queued."""
    queued = (
        RevenueEvent.objects.filter(pk=event_id)
        .filter(Q(**{STATUS_KEY: FAILED}) | Q(**{STATUS_KEY: PENDING}))
        .update(
            metadata=JsonMerge(
                "metadata",
                {
                    "onChainDeliveryStatus": PENDING,
                    "retryAttempts": 0,
                    "critical": None,
                    "alertedAt": None,
                    "nextRetryAt": None,
                    "manualRetryAt": iso(now),
                },
            )
        )
    )
    if queued:
        from revenue.dispatch import revenue_delivery_dispatch

        transaction.on_commit(revenue_delivery_dispatch)
    return bool(queued)
