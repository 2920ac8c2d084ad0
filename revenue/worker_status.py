"""What the delivery worker is doing, for staff: its heartbeat, whether delivery is
paused and why, and the events by status (the five statuses are disjoint: they add up
to the events)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.health import beat_report
from revenue.delivery.metadata import DeliveryStatus, status_expression
from revenue.models import DeliveryBatch, DeliveryBatchStatus, DeliveryHeartbeat, RevenueEvent
from revenue.reports import delivery_pause, held_count, stale_pending_count

# The beat task that re-drives delivery (revenue.migrations.0004_delivery_schedule).
REDRIVE_TASK = "revenue.tasks.revenue_delivery_redrive"
SECONDS_PER_PERIOD = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


def redrive_schedule() -> tuple[int | None, bool]:
    """How often beat re-drives delivery, in seconds, and whether it does: the schedule in
    the database (what beat follows; `migrate` wrote DELIVERY_POLL_INTERVAL_SECONDS there
    once, staff may have edited or disabled it since). (None, False) with no such task."""
    task = PeriodicTask.objects.filter(task=REDRIVE_TASK).select_related("interval").order_by("-enabled").first()
    if task is None:
        return None, False
    interval = task.interval
    seconds = round(interval.every * SECONDS_PER_PERIOD[interval.period]) if interval is not None else None
    return seconds, task.enabled


# No delivery cycle for this long: the chain worker or beat is not running (the threshold
# of PlatformDeliveryWorkerStalled, monitoring/alerts.yml).
STALLED_AFTER = timedelta(minutes=10)


def worker_stalled(worker: dict[str, Any], *, now: datetime | None = None) -> bool:
    """Delivery is on and the chain worker never ran a cycle, or not for STALLED_AFTER."""
    if not worker["enabled"]:
        return False
    last = worker["last_run_at"]
    return last is None or (now or timezone.now()) - last > STALLED_AFTER


def worker_error_current(worker: dict[str, Any]) -> bool:
    """The worker's last error is its latest outcome: no cycle has succeeded since. The
    heartbeat keeps the last error after later successes (with its time), for the record."""
    if not worker["last_error"]:
        return False
    success, error = worker["last_success_at"], worker["last_error_at"]
    return success is None or error is None or error >= success


def delivery_status_counts() -> dict[str, int]:
    """One grouped query over the status key (served by its expression index)."""
    rows = dict(
        RevenueEvent.objects.annotate(status=status_expression())
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {status.value: int(rows.get(status.value, 0)) for status in DeliveryStatus}


def onchain_worker_status() -> dict[str, Any]:
    """The heartbeat as staff read it. With the node unreachable at the worker's last cycle,
    the head and the final block are null (the heartbeat keeps them as last seen, shown as
    such under ``last_seen_*``), and ``unreachable_since`` says since when: the page read
    "- / 12", an old final block beside a blank head, as if current."""
    beat = DeliveryHeartbeat.objects.filter(pk=1).first()
    redrive_seconds, redrive_enabled = redrive_schedule()
    connected = bool(beat and beat.connected)
    in_flight = DeliveryBatch.objects.filter(status=DeliveryBatchStatus.SUBMITTED).aggregate(
        batches=Count("id"), stuck=Count("id", filter=Q(block_number__isnull=True, alerted_at__isnull=False))
    )
    return {
        "enabled": settings.DELIVERY_ENABLED,
        "last_run_at": beat.last_run_at if beat else None,
        "last_success_at": beat.last_success_at if beat else None,
        "last_error": (beat.last_error or None) if beat else None,
        "last_error_at": beat.last_error_at if beat else None,
        # The schedule beat follows; the setting only where none is kept (nothing re-drives then).
        "poll_interval_seconds": redrive_seconds or settings.DELIVERY_POLL_INTERVAL_SECONDS,
        "redrive_scheduled": redrive_enabled,
        "batch_size": settings.DELIVERY_BATCH_SIZE,
        "max_retry_attempts": settings.DELIVERY_MAX_ATTEMPTS,
        "confirmations": settings.CHAIN_CONFIRMATIONS,
        "counts": delivery_status_counts(),
        "stale_pending": stale_pending_count(now=timezone.now()),
        "held_for_funds": held_count(),
        "paused": delivery_pause(),
        "resumed_at": beat.resumed_at if beat else None,
        "batches_in_flight": int(in_flight["batches"]),
        "batches_stuck": int(in_flight["stuck"]),
        "signer_balance_low": bool(beat and beat.low_balance_alerted_at),
        "chain": {
            "connected": connected,
            "chain_id": beat.chain_id if beat else None,
            "contract_address": (beat.contract_address or None) if beat else None,
            "signer_address": (beat.signer_address or None) if beat else None,
            "signer_balance_wei": (beat.signer_balance_wei or None) if beat else None,
            "block_number": beat.block_number if beat and connected else None,
            "finalized_block": beat.finalized_block if beat and connected else None,
            "unreachable_since": beat.chain_lost_at if beat and not connected else None,
            "last_seen_at": beat.chain_seen_at if beat else None,
            "last_seen_block": beat.block_number if beat else None,
            "last_seen_finalized_block": beat.finalized_block if beat else None,
            "items_paid": beat.items_paid if beat else None,
            # Before items were deduplicated on-chain the reserve counted a sequence; the
            # count of items it paid is the same figure.
            "next_sequence": beat.items_paid if beat else None,
        },
        # Whether beat sends (core.health): trades start delivery runs of their own, so the
        # heartbeat above stays fresh with beat dead; nothing retried or swept meanwhile.
        "beat": beat_report(),
    }
