"""Conditions an operator must hear about, kept on the worker's state row (the heartbeat):

- a pause: an operator-level fault stops sending (revenue.chain.errors.PauseCause). It is
  alerted when it starts, again every DELIVERY_ALERT_REPEAT_SECONDS while it lasts, and
  once more when delivery resumes by itself (the first cycle that finds the cause gone);
- a low signer balance: below gas for DELIVERY_LOW_BALANCE_BATCHES batches, alerted before
  it runs dry (again on the same schedule while it stays low);
- batches `submitted` (not mined) for longer than DELIVERY_SUBMITTED_ALERT_SECONDS: one
  alert per batch;
- events held because their share is more than the signer can pay: each alerted once, at
  once when nothing held was alerted before, else in the next digest (at most every
  DELIVERY_ALERT_REPEAT_SECONDS while events stay held).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from revenue.alerts import alert_send
from revenue.chain.errors import OperatorFault
from revenue.delivery.metadata import (
    DeliveryStatus,
    Key,
    held,
    held_alert_unclaimed,
    lookup,
    patch_held_alert_claimed,
    status_in,
)
from revenue.delivery.selectors import HELD_READ, delivery_batches_stuck
from revenue.jsonb import JsonMerge
from revenue.models import DeliveryBatch, DeliveryHeartbeat, RevenueEvent

logger = logging.getLogger("revenue.delivery")


def _repeat_due(last: datetime | None, now: datetime) -> bool:
    return last is None or now - last >= timedelta(seconds=settings.DELIVERY_ALERT_REPEAT_SECONDS)


def _state_locked() -> DeliveryHeartbeat:
    DeliveryHeartbeat.objects.get_or_create(pk=1)
    return DeliveryHeartbeat.objects.select_for_update().get(pk=1)


def delivery_pause_cause() -> str:
    """The cause delivery is paused by ("" when it runs)."""
    return DeliveryHeartbeat.objects.filter(pk=1).values_list("pause_cause", flat=True).first() or ""


@transaction.atomic
def delivery_pause_set(*, fault: OperatorFault, now: datetime) -> bool:
    """Delivery is paused by ``fault``. Returns whether this call alerted."""
    state = _state_locked()
    fields = ["pause_detail"]
    state.pause_detail = fault.detail[:2000]
    starts = state.pause_cause != fault.cause
    if starts:
        state.pause_cause = fault.cause
        state.paused_since = now
        fields += ["pause_cause", "paused_since"]
        logger.error("delivery paused", extra={"cause": str(fault.cause), "detail": fault.detail[:500]})
    alert = starts or _repeat_due(state.pause_alerted_at, now)
    if alert:
        state.pause_alerted_at = now
        fields.append("pause_alerted_at")
        assert state.paused_since is not None  # noqa: S101  (set above when it starts)
        alert_send(
            kind="delivery_paused",
            subject=f"On-chain delivery paused: {fault.cause}"
            + ("" if starts else f" (still, since {state.paused_since:%Y-%m-%d %H:%M} UTC)"),
            details={
                "cause": str(fault.cause),
                "detail": fault.detail[:1000],
                "paused_since": state.paused_since.isoformat(),
                "repeat": not starts,
            },
        )
    state.save(update_fields=fields)
    return alert


def delivery_pause_clear(*, now: datetime) -> bool:
    """The cause is gone: delivery resumes. Returns whether it was paused."""
    if not delivery_pause_cause():  # the usual case: nothing to lock
        return False
    return _pause_clear(now=now)


@transaction.atomic
def _pause_clear(*, now: datetime) -> bool:
    state = _state_locked()
    if not state.pause_cause:
        return False
    cause, since = state.pause_cause, state.paused_since
    state.pause_cause, state.pause_detail, state.paused_since, state.pause_alerted_at = "", "", None, None
    state.resumed_at = now
    state.save(update_fields=["pause_cause", "pause_detail", "paused_since", "pause_alerted_at", "resumed_at"])
    lasted = int((now - since).total_seconds()) if since else 0
    logger.warning("delivery resumed", extra={"cause": cause, "paused_seconds": lasted})
    alert_send(
        kind="delivery_resumed",
        subject=f"On-chain delivery resumed ({cause} is gone)",
        details={"cause": cause, "paused_seconds": lasted},
    )
    return True


def signer_balance_watch(*, balance: int, threshold: int, now: datetime) -> bool:
    """Alert while the signer's balance is below ``threshold``. Returns whether this call alerted."""
    alerted = DeliveryHeartbeat.objects.filter(pk=1).values_list("low_balance_alerted_at", flat=True).first()
    if balance >= threshold and alerted is None:  # the usual case: nothing to lock
        return False
    return _balance_watch(balance=balance, threshold=threshold, now=now)


@transaction.atomic
def _balance_watch(*, balance: int, threshold: int, now: datetime) -> bool:
    state = _state_locked()
    if balance >= threshold:
        if state.low_balance_alerted_at is not None:
            state.low_balance_alerted_at = None
            state.save(update_fields=["low_balance_alerted_at"])
        return False
    if not _repeat_due(state.low_balance_alerted_at, now):
        return False
    state.low_balance_alerted_at = now
    state.save(update_fields=["low_balance_alerted_at"])
    alert_send(
        kind="signer_balance_low",
        subject="On-chain delivery: the signer's balance is low",
        details={
            "balance_wei": str(balance),
            "threshold_wei": str(threshold),
            "batches": settings.DELIVERY_LOW_BALANCE_BATCHES,
        },
    )
    return True


def batches_stuck_alert(*, now: datetime) -> list[int]:
    """One alert per batch submitted (not mined) for too long. Returns the batches alerted."""
    older_than = now - timedelta(seconds=settings.DELIVERY_SUBMITTED_ALERT_SECONDS)
    alerted = []
    for batch in delivery_batches_stuck(older_than=older_than):
        with transaction.atomic():
            if not DeliveryBatch.objects.filter(pk=batch.pk, alerted_at__isnull=True).update(alerted_at=now):
                continue
            alerted.append(batch.pk)
            waited = int((now - batch.submitted_at).total_seconds())
            alert_send(
                kind="delivery_batch_stuck",
                subject=f"On-chain delivery: batch {batch.pk} not mined after {waited} s",
                details={
                    "batch_id": batch.pk,
                    "nonce": batch.nonce,
                    "tx_hashes": batch.tx_hashes[-3:],
                    "submitted_at": batch.submitted_at.isoformat(),
                    "last_error": batch.last_error[:500],
                },
            )
    return alerted


def held_events_alert(*, balance: int, now: datetime) -> list[int]:
    """One alert for the held events not alerted yet (each event is alerted once: a hold
    again after a release is not). At once when no event held now was alerted before (a new
    hold); else at most every DELIVERY_ALERT_REPEAT_SECONDS, so a signer short of funds that
    holds event after event makes one alert per period, not one per cycle. Returns the
    events alerted."""
    holding = RevenueEvent.objects.filter(status_in(DeliveryStatus.PENDING, DeliveryStatus.FAILED) & held())
    waiting = list(holding.filter(held_alert_unclaimed()).order_by("id").values_list("pk", flat=True)[:HELD_READ])
    if not waiting:
        return []
    alerted_before = [
        datetime.fromisoformat(str(at))
        for at in holding.exclude(held_alert_unclaimed()).values_list(lookup(Key.HELD_ALERTED_AT), flat=True)[
            :HELD_READ
        ]
    ]
    if alerted_before and not _repeat_due(max(alerted_before), now):
        return []
    with transaction.atomic():
        RevenueEvent.objects.filter(pk__in=waiting).filter(held_alert_unclaimed()).update(
            metadata=JsonMerge("metadata", patch_held_alert_claimed(now=now))
        )
        rows = list(RevenueEvent.objects.filter(pk__in=waiting).values_list("stream_id", "holder_share", "currency"))
        total = holding.count()
        alert_send(
            kind="revenue_events_held",
            subject=f"On-chain delivery: {len(waiting)} revenue event(s) held, the signer cannot pay their share",
            details={
                "events": len(waiting),
                "event_ids": waiting[:50],
                "stream_ids": sorted({stream for stream, _, _ in rows}),
                "largest_holder_share": "{1} {2}".format(*max(rows, key=lambda row: row[1])),
                "events_held": total,
                "signer_balance_wei": str(balance),
                "hint": "each waits, out of every batch, until the signer's balance can pay it, then is paid by "
                "itself; fund the signer, or review the trades behind them (docs/delivery.md, 'Held for funds')",
            },
        )
    logger.error("revenue events held for funds alerted", extra={"event_ids": waiting[:50], "held": total})
    return waiting
