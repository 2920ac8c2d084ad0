"""What the delivery worker is doing, for staff: its heartbeat and counts by status."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Count
from django.db.models.fields.json import KT

from revenue.models import DeliveryHeartbeat, RevenueEvent
from revenue.reports import attempts_expression, critical_filter

STATUSES = ("pending", "submitted", "delivered", "failed")


def delivery_status_counts() -> dict[str, int]:
    """One grouped query over the status key (served by its expression index)."""
    rows = dict(
        RevenueEvent.objects.annotate(status=KT("metadata__onChainDeliveryStatus"))
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    counts = {status: int(rows.get(status, 0)) for status in STATUSES}
    counts["critical"] = (
        RevenueEvent.objects.filter(metadata__onChainDeliveryStatus="failed")
        .annotate(attempts=attempts_expression())
        .filter(critical_filter())
        .count()
    )
    return counts


def onchain_worker_status() -> dict[str, Any]:
    beat = DeliveryHeartbeat.objects.filter(pk=1).first()
    return {
        "enabled": settings.DELIVERY_ENABLED,
        "last_run_at": beat.last_run_at if beat else None,
        "last_success_at": beat.last_success_at if beat else None,
        "last_error": (beat.last_error or None) if beat else None,
        "last_error_at": beat.last_error_at if beat else None,
        "poll_interval_seconds": settings.DELIVERY_POLL_INTERVAL_SECONDS,
        "batch_size": settings.DELIVERY_BATCH_SIZE,
        "max_retry_attempts": settings.DELIVERY_MAX_ATTEMPTS,
        "confirmations": settings.CHAIN_CONFIRMATIONS,
        "counts": delivery_status_counts(),
        "chain": {
            "connected": bool(beat and beat.connected),
            "chain_id": beat.chain_id if beat else None,
            "contract_address": (beat.contract_address or None) if beat else None,
            "signer_address": (beat.signer_address or None) if beat else None,
            "signer_balance_wei": (beat.signer_balance_wei or None) if beat else None,
            "block_number": beat.block_number if beat else None,
            "next_sequence": beat.next_sequence if beat else None,
        },
    }
