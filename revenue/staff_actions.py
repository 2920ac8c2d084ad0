"""What staff may do to financial records, each with its audit trail (StaffAction: who,
when, what, from which state). Everything else about revenue events, batches, deployments,
trades and the ledger is read-only for people: the admin shows it, services write it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.timesince import timeuntil

from core.errors import ApplicationError, InvalidInput
from core.logging import correlation_id_get
from core.text import staff_reason_clean
from revenue.alerts import alert_send
from revenue.chain.client import ChainUnavailable, error_message
from revenue.chain.runtime import node_connect
from revenue.delivery.abandon import AbandonVerdict, delivery_batch_abandon_refusal, delivery_batch_abandon_verdict
from revenue.delivery.lock import delivery_sender_lock
from revenue.delivery.metadata import DeliveryStatus, carried, status_expression
from revenue.delivery.transitions import batch_abandon, revenue_event_delivery_retry
from revenue.errors import ChainNodeUnavailable, DeliveryBatchNotAbandonable, DeliveryBatchNotFound, DeliverySenderBusy
from revenue.models import (
    DeliveryBatch,
    DeliveryBatchStatus,
    RevenueEvent,
    StaffAction,
    StaffActionKind,
    StaffActionOutcome,
)

EVENT = "revenue_event"
BATCH = "delivery_batch"
RETRY_REASON_BLANK = "A reason, when given, says something (or leave it out): it is kept in the audit trail."
# Events one retry may take: each is locked and audited in one transaction. "Select all"
# over a list filtered on nothing took every event (a 500 on SQLite past its bound-variable
# limit; on PostgreSQL every event locked, the delivery worker waiting behind them).
RETRY_MAX_EVENTS = 1000


@dataclass(frozen=True)
class RetryOutcome:
    """Counted from the states read before anything changed (under the rows' lock)."""

    queued: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # event id -> its state (in flight, delivered)
    carried: list[int] = field(default_factory=list)  # pending dust, waiting for its stream's bundle
    missing: list[int] = field(default_factory=list)

    @property
    def all_queued(self) -> bool:
        return bool(self.queued) and not self.skipped and not self.carried

    def message(self) -> str:
        text = f"{len(self.queued)} queued, {len(self.skipped) + len(self.carried)} skipped"
        reasons = []
        if self.skipped:
            states = sorted(set(self.skipped.values()))
            reasons.append(f"in flight or delivered: {', '.join(states)}")
        if self.carried:
            now = timezone.now()  # one moment for both ends: "1 week", not "6 days, 23 hours"
            wait = timeuntil(now + timedelta(seconds=settings.DELIVERY_DUST_MAX_AGE_SECONDS), now).replace("\xa0", " ")
            reasons.append(
                f"{len(self.carried)} dust carried forward: paid with its stream's bundle once the stream's dust is "
                f"worth a payment or its oldest share has waited {wait}; a retry cannot send it sooner"
            )
        if reasons:
            text += f" ({'; '.join(reasons)})"
        if str(DeliveryStatus.SUBMITTED) in self.skipped.values():
            text += "; an event in a batch stuck in flight is freed by abandoning its batch"
        if self.missing:
            text += f", {len(self.missing)} not found"
        return text + "."


def revenue_events_delivery_retry(
    *, event_ids: Iterable[int], actor: Any, via: str, reason: str | None = None
) -> RetryOutcome:
    """Staff: queue these events' delivery again with a fresh attempt budget. Only pending,
    failed or critical events are queued; events in flight or delivered, and pending dust
    carried forward (it goes with its stream's bundle), are skipped. Every event considered
    gets a StaffAction row with the state it was in and ``reason``, the staff member's why:
    optional, but when given it must say something (staff_reason_clean), and nothing is
    queued otherwise."""
    why = "" if reason is None else staff_reason_clean(reason=reason, missing=RETRY_REASON_BLANK)
    ids = sorted({int(pk) for pk in event_ids})
    if len(ids) > RETRY_MAX_EVENTS:
        raise InvalidInput(
            fields={"event_ids": [f"At most {RETRY_MAX_EVENTS} events at once, nothing was queued: filter the "
                                  "list by delivery status (critical, failed) first."]}
        )  # fmt: skip
    outcome = RetryOutcome()
    now = timezone.now()
    with transaction.atomic():
        states = dict(
            RevenueEvent.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .annotate(state=status_expression())
            .values_list("pk", "state")
        )
        # Dust waits for its stream's bundle whatever staff do: said, not counted as queued.
        dust = set(RevenueEvent.objects.filter(pk__in=list(states)).filter(carried()).values_list("pk", flat=True))
        records = []
        for pk in ids:
            if pk not in states:
                outcome.missing.append(pk)
                continue
            before = str(states[pk] or DeliveryStatus.PENDING)
            queued = pk not in dust and revenue_event_delivery_retry(event_id=pk, now=now)
            if queued:
                outcome.queued.append(pk)
            elif pk in dust:
                outcome.carried.append(pk)
            else:
                outcome.skipped[pk] = before
            records.append(
                _staff_action(
                    actor=actor,
                    at=now,
                    action=StaffActionKind.DELIVERY_RETRY,
                    target_type=EVENT,
                    target_id=pk,
                    from_state=before,
                    to_state=str(DeliveryStatus.PENDING) if queued else before,
                    outcome=StaffActionOutcome.DONE if queued else StaffActionOutcome.SKIPPED,
                    via=via,
                    reason=why,
                    detail="dust carried forward" if pk in dust else "",
                )
            )
        StaffAction.objects.bulk_create(records)
    return outcome


def _staff_action(
    *,
    actor: Any,
    at: datetime,
    action: StaffActionKind,
    target_type: str,
    target_id: int,
    from_state: str,
    to_state: str,
    outcome: StaffActionOutcome,
    via: str,
    reason: str = "",
    detail: str = "",
) -> StaffAction:
    """One audit row (not saved), with the request's correlation id."""
    correlation_id = correlation_id_get()
    return StaffAction(
        actor=actor,
        actor_username=actor.get_username(),
        at=at,
        action=action,
        target_type=target_type,
        target_id=target_id,
        from_state=from_state,
        to_state=to_state,
        outcome=outcome,
        via=via,
        correlation_id=correlation_id if correlation_id != "-" else "",
        reason=reason,
        detail=detail,
    )


# --------------------------------------------------------------------------- abandoning a batch


@dataclass(frozen=True)
class AbandonOutcome:
    batch_id: int
    grounds: str  # revenue.delivery.abandon: nonce_used | tx_gone
    detail: str
    events_returned: int


def delivery_batch_abandon(*, batch_id: int, actor: Any, reason: str, via: str) -> AbandonOutcome:
    """Staff: give up on a batch stuck in `submitted` and return its events to pending (no
    attempt used; a delivery run is published), only once the chain shows that no version
    of it is mined or paid anything and that its nonce was used at or below the final block,
    or that the node knows no version of it (revenue.delivery.abandon). Checked and written
    as the only sender (the delivery lock: a cycle in progress answers DeliverySenderBusy)
    and written only if no version was signed meanwhile. Every attempt, refused or done,
    leaves a StaffAction row: who, when, why (``reason``) and what the chain showed."""
    why = staff_reason_clean(reason=reason, missing="Say why the batch is abandoned (it is kept in the audit trail).")
    batch = DeliveryBatch.objects.select_related("deployment").filter(pk=batch_id).first()
    if batch is None:
        raise DeliveryBatchNotFound()
    refusal = delivery_batch_abandon_refusal(batch=batch)
    if refusal is not None:
        _abandon_refused(batch=batch, actor=actor, via=via, reason=why, verdict=refusal)
    with delivery_sender_lock() as acquired:
        if not acquired:
            _abandon_refused(
                batch=batch, actor=actor, via=via, reason=why,
                verdict=AbandonVerdict.refused("busy", "the delivery worker was in a cycle: nothing was checked"),
                error=DeliverySenderBusy(retry_after=5),
            )  # fmt: skip
        try:
            w3, _ = node_connect(settings.WEB3_PROVIDER_URI)
            verdict = delivery_batch_abandon_verdict(w3=w3, batch=batch)
        except ChainUnavailable as exc:
            _abandon_refused(
                batch=batch, actor=actor, via=via, reason=why,
                verdict=AbandonVerdict.refused("chain_unavailable", error_message(exc)[:500]),
                error=ChainNodeUnavailable(retry_after=30),
            )  # fmt: skip
        if not verdict.allowed:
            _abandon_refused(batch=batch, actor=actor, via=via, reason=why, verdict=verdict)
        now = timezone.now()
        error = f"abandoned by {actor.get_username()}: {why} ({verdict.grounds}: {verdict.detail})"
        with transaction.atomic():
            returned = batch_abandon(batch_id=batch.pk, tx_hashes=batch.tx_hashes, error=error)
            if returned is not None:
                alert_send(
                    kind="delivery_batch_abandoned",
                    subject=f"On-chain delivery: batch {batch.pk} abandoned by {actor.get_username()}",
                    details={"batch_id": batch.pk, "nonce": batch.nonce, "events_returned": returned,
                             "reason": why, "grounds": verdict.grounds, "detail": verdict.detail},
                )  # fmt: skip
                _staff_action(
                    actor=actor, at=now, action=StaffActionKind.BATCH_ABANDON, target_type=BATCH,
                    target_id=batch.pk, from_state=str(batch.status), to_state=str(DeliveryBatchStatus.ABANDONED),
                    outcome=StaffActionOutcome.DONE, via=via, reason=why,
                    detail=f"{verdict.grounds}: {verdict.detail}; {returned} event(s) back to pending",
                ).save()  # fmt: skip
    if returned is None:
        _abandon_refused(
            batch=batch, actor=actor, via=via, reason=why,
            verdict=AbandonVerdict.refused("changed", "the batch changed while it was checked (a version signed, "
                                           "or mined): look again"),
        )  # fmt: skip
    return AbandonOutcome(batch_id=batch.pk, grounds=verdict.grounds, detail=verdict.detail, events_returned=returned)


def _abandon_refused(
    *,
    batch: DeliveryBatch,
    actor: Any,
    via: str,
    reason: str,
    verdict: AbandonVerdict,
    error: ApplicationError | None = None,
) -> NoReturn:
    """Recorded (committed on its own: the refusal raised next rolls nothing of it back), then raised."""
    state = str(batch.status)
    _staff_action(
        actor=actor, at=timezone.now(), action=StaffActionKind.BATCH_ABANDON, target_type=BATCH,
        target_id=batch.pk, from_state=state, to_state=state, outcome=StaffActionOutcome.REFUSED, via=via,
        reason=reason, detail=f"{verdict.grounds}: {verdict.detail}",
    ).save()  # fmt: skip
    raise error or DeliveryBatchNotAbandonable(f"Batch {batch.pk} was not abandoned: {verdict.detail}.")
