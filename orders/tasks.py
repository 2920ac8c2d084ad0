"""Celery tasks of the orders app: thin wrappers around services, idempotent (late
acknowledgement, re-queued if a worker dies)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from orders.services.outbox import trade_outbox_consumed_delete
from orders.services.users import users_inactive_close


# Periodic (beat, every INACTIVE_ORDERS_SWEEP_INTERVAL_SECONDS): no retries of its own, the
# next beat is the retry.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def inactive_orders_sweep() -> int:
    return len(users_inactive_close())


# Periodic (beat, every TRADE_OUTBOX_PRUNE_INTERVAL_SECONDS): the next beat is the retry.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def trade_outbox_prune() -> int:
    return trade_outbox_consumed_delete(older_than=timedelta(days=settings.TRADE_OUTBOX_RETENTION_DAYS))
