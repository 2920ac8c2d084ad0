"""Alerts about revenue events that need a human: logged at ERROR, mailed to the admins
and optionally POSTed to ALERT_WEBHOOK_URL, once per event, after the commit."""

from __future__ import annotations

import logging
from datetime import UTC
from functools import partial
from typing import Any

import requests
from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone

from revenue.jsonb import JsonMerge
from revenue.models import RevenueEvent

logger = logging.getLogger("revenue.alerts")
WEBHOOK_TIMEOUT_SECONDS = 5


def revenue_event_critical_alert(*, event_id: int, reason: str) -> bool:
    """Claim the event's alert (metadata.alertedAt, set in SQL only where it is absent, so
    concurrent or repeated calls alert once) and send it after the commit. Returns whether
    this call alerted."""
    now = timezone.now()
    with transaction.atomic():
        claimed = RevenueEvent.objects.filter(pk=event_id, metadata__alertedAt__isnull=True).update(
            metadata=JsonMerge("metadata", {"alertedAt": now.astimezone(UTC).isoformat(timespec="microseconds")})
        )
        if not claimed:
            return False
        event = (
            RevenueEvent.objects.filter(pk=event_id)
            .values("pk", "stream_id", "holder_share", "currency", "source_type", "source_id", "metadata")
            .first()
        )
        if event is None:
            return False
        alert = {
            "kind": "revenue_event_critical",
            "event_id": event["pk"],
            "stream_id": event["stream_id"],
            "holder_share": str(event["holder_share"]),
            "currency": event["currency"],
            "source": f"{event['source_type']}:{event['source_id']}",
            "retry_attempts": event["metadata"].get("retryAttempts"),
            "reason": reason[:1000],
        }
        transaction.on_commit(partial(_alert_send, alert=alert))
    return True


def _alert_send(*, alert: dict[str, Any]) -> None:
    logger.error("revenue event needs attention: on-chain delivery gave up", extra=alert)
    mail_admins(
        subject=f"Revenue event {alert['event_id']}: on-chain delivery gave up",
        message="\n".join(f"{key}: {value}" for key, value in alert.items()),
        fail_silently=True,
    )
    if settings.ALERT_WEBHOOK_URL:
        try:
            requests.post(settings.ALERT_WEBHOOK_URL, json=alert, timeout=WEBHOOK_TIMEOUT_SECONDS)
        except requests.RequestException:
            logger.warning("alert webhook unreachable", extra={"event_id": alert["event_id"]}, exc_info=True)
