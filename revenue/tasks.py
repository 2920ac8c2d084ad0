"""Celery tasks of the revenue app: thin wrappers around services. All are idempotent,
so they run with late acknowledgement and are re-queued if a worker dies."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from revenue.selectors import post_trade_jobs_stale
from revenue.services import post_trade_jobs_process


@shared_task(acks_late=True, reject_on_worker_lost=True)
def post_trade_jobs_run(*, job_ids: list[int]) -> int:
    return post_trade_jobs_process(job_ids=job_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def post_trade_jobs_sweep() -> int:
    stale = post_trade_jobs_stale(
        older_than_seconds=settings.POST_TRADE_SWEEP_AGE_SECONDS, limit=settings.POST_TRADE_SWEEP_BATCH
    )
    return post_trade_jobs_process(job_ids=stale)
