"""Alerts that need a human: logged at ERROR, mailed to the admins and optionally POSTed
to ALERT_WEBHOOK_URL, after the commit of whatever decided them (never for a rolled-back
decision). Each caller claims its alert in the database first, so it is sent once.

Kinds: ``revenue_events_critical`` (events whose delivery gave up), ``delivery_paused``
(again on a schedule while the pause lasts) and ``delivery_resumed``,
``signer_balance_low``, ``delivery_batch_stuck``, ``foreign_payment`` (a transaction this
platform did not send paid items: someone else holds the signer's key), ``finality_broken``
(a payment the platform saw final left the canonical chain: its events are paid again),
``delivery_batch_abandoned`` (staff gave up on a stuck batch: who, why, what the chain showed),
``revenue_events_held`` (events whose share the signer cannot pay: held, each alerted once;
revenue.delivery.conditions.held_events_alert).
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any

import requests
from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone

from revenue.delivery.metadata import alert_unclaimed, patch_alert_claimed
from revenue.jsonb import JsonMerge
from revenue.models import RevenueEvent

logger = logging.getLogger("revenue.alerts")
WEBHOOK_TIMEOUT_SECONDS = 5
EVENTS_LISTED = 50


def alert_send(*, kind: str, subject: str, details: dict[str, Any]) -> None:
    """Send one alert after the current transaction commits (at once outside one)."""
    alert = {"kind": kind, "subject": subject, **details}
    if settings.PLATFORM_NAME:  # which platform, where several share the webhook
        alert["platform"] = settings.PLATFORM_NAME
    transaction.on_commit(partial(_alert_send, alert=alert))


def revenue_events_critical_alert(*, event_ids: list[int], reason: str, now: datetime | None = None) -> list[int]:
    """Claim the events' alert (a timestamp in their metadata, set in SQL only where absent, so
    concurrent or repeated calls alert each event once) and send one alert for all the
    events claimed. Returns them."""
    if not event_ids:
        return []
    moment = now or timezone.now()
    with transaction.atomic():
        unclaimed = RevenueEvent.objects.filter(pk__in=event_ids).filter(alert_unclaimed())
        claimed = sorted(unclaimed.values_list("pk", flat=True))
        if not claimed:
            return []
        RevenueEvent.objects.filter(pk__in=claimed).update(
            metadata=JsonMerge("metadata", patch_alert_claimed(now=moment))
        )
        streams = sorted(set(RevenueEvent.objects.filter(pk__in=claimed).values_list("stream_id", flat=True)))
        alert_send(
            kind="revenue_events_critical",
            subject=f"{len(claimed)} revenue event(s): on-chain delivery gave up",
            details={
                "events": len(claimed),
                "event_ids": claimed[:EVENTS_LISTED],
                "stream_ids": streams,
                "reason": reason[:1000],
            },
        )
    return claimed


def _alert_send(*, alert: dict[str, Any]) -> None:
    logger.error("delivery alert: %s", alert["subject"], extra={"alert": alert})
    # A channel that did not take the alert says so (the ERROR line above stays the record):
    # fail_silently and an unchecked webhook answer hid a refusing mail server or pager.
    try:
        mail_admins(subject=alert["subject"], message="\n".join(f"{key}: {value}" for key, value in alert.items()))
    except Exception as exc:  # any backend's failure: the alert must not be lost with the caller
        logger.warning("alert mail not sent", extra={"kind": alert["kind"], "error": repr(exc)[:500]})
    if settings.ALERT_WEBHOOK_URL:
        try:
            requests.post(settings.ALERT_WEBHOOK_URL, json=alert, timeout=WEBHOOK_TIMEOUT_SECONDS).raise_for_status()
        except requests.HTTPError as exc:  # its status only: the hook's URL often carries its secret
            status = exc.response.status_code if exc.response is not None else None
            logger.warning("alert webhook refused the alert", extra={"kind": alert["kind"], "status": status})
        except requests.RequestException as exc:  # no traceback: its message names the URL's path
            logger.warning("alert webhook unreachable", extra={"kind": alert["kind"], "error": type(exc).__name__})
