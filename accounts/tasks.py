"""Periodic work of the accounts app (django-celery-beat schedules it: migrations)."""

from __future__ import annotations

from celery import shared_task

from accounts.tokens import refresh_tokens_expired_delete


# Periodic (beat, every REFRESH_TOKENS_FLUSH_INTERVAL_SECONDS): the next beat is the retry.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def refresh_tokens_expired_flush() -> int:
    return refresh_tokens_expired_delete()
