"""The on-chain failure report, aggregated in SQL (a grouped query and one windowed
query for the listed events), so it stays fast at millions of events.

Failures are the events that need attention: `failed` and `critical` ones, events held
because their share is more than the signer can pay (from the moment they are held), and
events left `pending` for over 10 minutes since anything last happened to them (created,
put in a transaction, re-queued by staff, returned by a reorg; not dust carried forward:
that waits on purpose). The summary also says whether delivery is paused and why: while it is, the
events wait without failing, and the pause is the failure to look at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Max, Q, Window
from django.db.models.functions import RowNumber
from django.db.models.lookups import LessThan
from django.utils import timezone

from core.db import money_sums
from revenue.delivery.metadata import (
    DeliveryStatus,
    Key,
    attempts_expression,
    carried,
    held,
    iso,
    lookup,
    status_among,
    status_in,
    status_is,
    text,
    text_cast,
)
from revenue.models import DeliveryBatch, DeliveryBatchStatus, DeliveryHeartbeat, RevenueEvent, RevenueStream
from revenue.selectors import currency_usd_rates, usd_totals

STALE_PENDING_MINUTES = 10
EVENTS_PER_STREAM = 50


@dataclass(frozen=True, slots=True)
class FailureReport:
    summary: dict[str, object]
    by_stream: list[dict[str, object]]


# What happened to a pending event last, besides its creation: put in a transaction (the
# batch it was in was then abandoned, superseded or failed by an operator fault), re-queued
# by staff, returned by a reorg.
_TOUCHED_KEYS = (Key.LAST_RETRY_AT, Key.MANUAL_RETRY_AT, Key.REORGED_AT)


def _untouched_since(moment: datetime) -> Q:
    """Nothing happened to the event at or after ``moment`` (timestamps compare as text)."""
    condition = Q(created_at__lt=moment)
    for key in _TOUCHED_KEYS:
        condition &= Q(**{lookup(key, "__isnull"): True}) | Q(LessThan(text_cast(key), iso(moment)))
    return condition


def stale_pending_rule(*, now: datetime) -> Q:
    """Pending (not dust carried forward, which waits on purpose) and untouched for over
    STALE_PENDING_MINUTES: a fresh event, or one that was sent before and came back to
    pending (its batch abandoned, a reorg, a staff retry), that no cycle has picked up. The
    report counted only events never attempted (no last send recorded): one sent once and returned
    could wait for ever without being reported. The status arm is the key lookup of
    revenue_event_attention's predicate (the report reads that index)."""
    return (
        status_in(DeliveryStatus.PENDING)
        & _untouched_since(now - timedelta(minutes=STALE_PENDING_MINUTES))
        & ~carried()
        & ~held()  # reported as held, from the moment it is
    )


def stale_pending_count(*, now: datetime) -> int:
    """Every stale pending event, whenever it was created (the report's window is by creation)."""
    return RevenueEvent.objects.filter(status_is(DeliveryStatus.PENDING)).filter(stale_pending_rule(now=now)).count()


def held_rule() -> Q:
    """Held: the share is more than the signer can pay (revenue.delivery.broadcast); it waits,
    out of every batch, for a balance that can. The predicate of revenue_event_held."""
    return status_in(DeliveryStatus.PENDING, DeliveryStatus.FAILED) & held()


def held_count() -> int:
    """Every held event, whenever it was created (read through revenue_event_held)."""
    return RevenueEvent.objects.filter(held_rule()).count()


def failures_filter(*, now: datetime) -> Q:
    """Failed and critical events, held ones and stale pending ones (stale_pending_rule).
    Each arm names its statuses with the key lookup of revenue_event_attention's predicate
    (ATTENTION_STATUSES), so the report reads that index by creation time."""
    return (
        status_in(DeliveryStatus.FAILED, DeliveryStatus.CRITICAL)
        | (status_in(DeliveryStatus.PENDING) & held())
        | stale_pending_rule(now=now)
    )


def delivery_pause() -> dict[str, Any] | None:
    """The current pause of delivery (cause, detail, since, last alert), None while it runs."""
    state = (
        DeliveryHeartbeat.objects.filter(pk=1)
        .values("pause_cause", "pause_detail", "paused_since", "pause_alerted_at")
        .first()
    )
    if not state or not state["pause_cause"]:
        return None
    return {
        "cause": state["pause_cause"],
        "detail": state["pause_detail"],
        "since": state["paused_since"],
        "last_alert_at": state["pause_alerted_at"],
    }


def onchain_failure_report(*, hours: int, stream_id: int | None = None, now: datetime | None = None) -> FailureReport:
    moment = now or timezone.now()
    failures = RevenueEvent.objects.filter(created_at__gte=moment - timedelta(hours=hours)).filter(
        failures_filter(now=moment)
    )
    if stream_id is not None:
        failures = failures.filter(stream_id=stream_id)
    failures = failures.annotate(attempts=attempts_expression())

    grouped = list(
        failures.values("stream_id")
        .annotate(
            count=Count("id"),
            max_retries=Max("attempts"),
            critical=Count("id", filter=status_in(DeliveryStatus.CRITICAL)),
        )
        .order_by("stream_id")
    )
    # Holder shares are in each event's currency (a market's quote asset): summed per
    # currency, exactly (core.db.money_sums), and counted in US dollars (revenue.selectors.
    # usd_totals; a currency with no dollar price is left out of the sum, its events counted).
    holder_sums = money_sums(failures, group_by=("stream_id", "currency"), fields=["holder_share"])
    rates = currency_usd_rates(currencies={currency for _, currency in holder_sums})
    per_stream: dict[int, dict[str, tuple[Decimal, ...]]] = {}
    for (sid, currency), figures in holder_sums.items():
        per_stream.setdefault(sid, {})[currency] = figures
    pending = {sid: (usd_totals(sums=sums, rates=rates) or (Decimal(0),))[0] for sid, sums in per_stream.items()}
    names = dict(RevenueStream.objects.values_list("id", "name"))
    listed = (
        failures.annotate(
            row=Window(RowNumber(), partition_by=[F("stream_id")], order_by=[F("created_at").desc(), F("id").desc()]),
            delivery_status=text(Key.STATUS),
            last_error=text(Key.LAST_ERROR),
            next_retry_at=text(Key.NEXT_RETRY_AT),
            held_cause=text(Key.HELD_CAUSE),
        )
        .filter(row__lte=EVENTS_PER_STREAM)
        .values(
            "id",
            "stream_id",
            "holder_share",
            "currency",
            "description",
            "created_at",
            "attempts",
            "delivery_status",
            "last_error",
            "next_retry_at",
            "held_cause",
        )
    )
    events_by_stream: dict[int, list[dict[str, object]]] = {}
    for row in listed:
        events_by_stream.setdefault(row["stream_id"], []).append(
            {
                "id": row["id"],
                "holder_share": row["holder_share"],
                "currency": row["currency"],
                "description": row["description"],
                "created_at": row["created_at"],
                "retry_attempts": row["attempts"],
                "status": row["delivery_status"],
                "last_error": row["last_error"],
                "next_retry_at": row["next_retry_at"],
                "held_cause": row["held_cause"],
            }
        )
    # In flight for long: counted from when the event was put in its transaction (its
    # last_retry_at), not from its creation (an event that waited out a pause and was sent
    # a second ago is not stuck); created_at only for an event with no submission time.
    in_flight_since = moment - timedelta(minutes=STALE_PENDING_MINUTES)
    in_flight_too_long = (
        RevenueEvent.objects.filter(status_is(DeliveryStatus.SUBMITTED))
        .alias(submitted_at=text_cast(Key.LAST_RETRY_AT))
        .filter(Q(submitted_at__lt=iso(in_flight_since)) | Q(submitted_at__isnull=True, created_at__lt=in_flight_since))
        .count()
    )
    # the status expression index: the jsonb -> list of status_in would read every event
    waiting = RevenueEvent.objects.filter(status_among(DeliveryStatus.PENDING, DeliveryStatus.FAILED)).aggregate(
        events=Count("id"), dust=Count("id", filter=carried())
    )
    pause = delivery_pause()
    summary = {
        "total_failures": sum(int(g["count"]) for g in grouped),
        "critical_failures": sum(int(g["critical"]) for g in grouped),
        "total_holder_share_pending": sum(pending.values(), Decimal(0)),
        "period_hours": hours,
        "needs_reconciliation": in_flight_too_long,
        "delivery_paused": pause is not None,
        "pause": pause,
        "stale_pending": stale_pending_count(now=moment),
        "held_for_funds": held_count(),
        "events_waiting": int(waiting["events"]),
        "dust_carried": int(waiting["dust"]),
        "batches_stuck": DeliveryBatch.objects.filter(
            status=DeliveryBatchStatus.SUBMITTED, block_number__isnull=True, alerted_at__isnull=False
        ).count(),
    }
    by_stream = [
        {
            "stream_id": g["stream_id"],
            "stream_name": names.get(g["stream_id"], str(g["stream_id"])),
            "count": g["count"],
            "critical": g["critical"],
            "total_holder_share": pending.get(g["stream_id"], Decimal(0)),
            "max_retries": g["max_retries"],
            "events": events_by_stream.get(g["stream_id"], []),
        }
        for g in grouped
    ]
    return FailureReport(summary=summary, by_stream=by_stream)
