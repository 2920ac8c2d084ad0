"""What staff may do to financial records, each with its audit trail (StaffAction: who,
when, what, from which state). Everything else about revenue events, batches, deployments,
trades and the ledger is read-only for people: the admin shows it, services write it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.logging import correlation_id_get
from revenue.delivery.metadata import DeliveryStatus, status_expression
from revenue.delivery.transitions import revenue_event_delivery_retry
from revenue.models import RevenueEvent, StaffAction, StaffActionKind, StaffActionOutcome

EVENT = "revenue_event"


@dataclass(frozen=True)
class RetryOutcome:
    """Counted from the states read before anything changed (under the rows' lock)."""

    queued: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # event id -> its state (in flight, delivered)
    missing: list[int] = field(default_factory=list)

    def message(self) -> str:
        text = f"{len(self.queued)} queued, {len(self.skipped)} skipped"
        if self.skipped:
            states = sorted(set(self.skipped.values()))
            text += f" (in flight or delivered: {', '.join(states)})"
        if self.missing:
            text += f", {len(self.missing)} not found"
        return text + "."


def revenue_events_delivery_retry(*, event_ids: Iterable[int], actor: Any, via: str) -> RetryOutcome:
    """Staff: queue these events' delivery again with a fresh attempt budget. Only pending,
    failed or critical events are queued; events in flight or delivered are skipped. Every
    event considered gets a StaffAction row with the state it was in."""
    ids = sorted({int(pk) for pk in event_ids})
    outcome = RetryOutcome()
    now = timezone.now()
    correlation_id = correlation_id_get()
    with transaction.atomic():
        states = dict(
            RevenueEvent.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .annotate(state=status_expression())
            .values_list("pk", "state")
        )
        records = []
        for pk in ids:
            if pk not in states:
                outcome.missing.append(pk)
                continue
            before = str(states[pk] or DeliveryStatus.PENDING)
            queued = revenue_event_delivery_retry(event_id=pk, now=now)
            if queued:
                outcome.queued.append(pk)
            else:
                outcome.skipped[pk] = before
            records.append(
                StaffAction(
                    actor=actor,
                    actor_username=actor.get_username(),
                    at=now,
                    action=StaffActionKind.DELIVERY_RETRY,
                    target_type=EVENT,
                    target_id=pk,
                    from_state=before,
                    to_state=str(DeliveryStatus.PENDING) if queued else before,
                    outcome=StaffActionOutcome.DONE if queued else StaffActionOutcome.SKIPPED,
                    via=via,
                    correlation_id=correlation_id if correlation_id != "-" else "",
                )
            )
        StaffAction.objects.bulk_create(records)
    return outcome
