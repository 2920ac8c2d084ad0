"""Celery tasks of core: periodic (django-celery-beat schedules them: migrations)."""

from __future__ import annotations

from celery import shared_task

from core.retention import expired_entries_delete as expired_entries_remove


# Periodic (beat, every EXPIRED_ENTRIES_DELETE_INTERVAL_SECONDS): the next beat is the retry.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def expired_entries_delete() -> int:
    return expired_entries_remove()
