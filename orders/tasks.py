"""Celery tasks of the orders app: thin wrappers around services, idempotent (late
acknowledgement, re-queued if a worker dies)."""

from __future__ import annotations

from celery import shared_task

from orders.services.users import users_inactive_close


# Periodic (beat, every INACTIVE_ORDERS_SWEEP_INTERVAL_SECONDS): no retries of its own, the
# next beat is the retry.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def inactive_orders_sweep() -> int:
    return len(users_inactive_close())
