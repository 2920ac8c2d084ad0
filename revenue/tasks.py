"""Celery tasks of the revenue app: thin wrappers around services. All are idempotent,
so they run with late acknowledgement and are re-queued if a worker dies."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from revenue.chain.client import TransientChainError
from revenue.delivery.service import revenue_events_deliver, revenue_events_redrive
from revenue.selectors import post_trade_jobs_stale
from revenue.services import post_trade_jobs_catch_up, post_trade_jobs_process

# A windowed task takes at most this many batches of POST_TRADE_SWEEP_BATCH jobs; the next
# publication or the sweep takes the rest.
POST_TRADE_CATCH_UP_ROUNDS = 20


@shared_task(acks_late=True, reject_on_worker_lost=True)
def post_trade_jobs_run(*, job_ids: list[int] | None = None) -> int:
    if job_ids is None:  # a windowed publication (revenue.dispatch.post_trade_jobs_dispatch)
        return post_trade_jobs_catch_up(batch=settings.POST_TRADE_SWEEP_BATCH, rounds=POST_TRADE_CATCH_UP_ROUNDS)
    return post_trade_jobs_process(job_ids=job_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def post_trade_jobs_sweep() -> int:
    stale = post_trade_jobs_stale(
        older_than_seconds=settings.POST_TRADE_SWEEP_AGE_SECONDS, limit=settings.POST_TRADE_SWEEP_BATCH
    )
    return post_trade_jobs_process(job_ids=stale)


# On-chain delivery runs on the "chain" queue (CELERY_TASK_ROUTES), one sender at a time.
# A transient chain error is retried with backoff well below the broker's visibility
# timeout (3600 s), so a message is never redelivered while its retry is still waiting.
@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.DELIVERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.DELIVERY_TASK_TIME_LIMIT,
    autoretry_for=(TransientChainError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=4,
)
def revenue_delivery_run() -> dict[str, Any]:
    result = revenue_events_deliver(max_batches=settings.DELIVERY_MAX_BATCHES_PER_RUN)
    result.raise_for_transient()
    return result.as_dict()


# Periodic (beat, every DELIVERY_POLL_INTERVAL_SECONDS): no retries of its own, the next
# beat is the retry.
@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.DELIVERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.DELIVERY_TASK_TIME_LIMIT,
)
def revenue_delivery_redrive() -> dict[str, Any]:
    return revenue_events_redrive().as_dict()
