"""Publishing Celery tasks after commit without ever failing or stalling the caller.

If the broker is unreachable the work stays in the outbox and the periodic sweep picks
it up; a short circuit breaker keeps requests fast while the broker is down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import current_app as app
from django.conf import settings
from django.core.cache import cache

from core.cache import CACHE_ERRORS, cache_failure_log

logger = logging.getLogger("revenue.dispatch")

_lock = threading.Lock()
_broker_down_until = 0.0


def publish_safely(send: Callable[[], Any], *, what: str) -> bool:
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return False
    try:
        send()
        return True
    except Exception:  # broker unreachable or refusing: the outbox row is the source of truth
        with _lock:
            _broker_down_until = time.monotonic() + settings.BROKER_RETRY_AFTER_SECONDS
        logger.warning("could not publish %s; the periodic sweep will pick it up", what, exc_info=True)
        return False


def broker_circuit_reset() -> None:
    global _broker_down_until
    _broker_down_until = 0.0


# Tasks are published by name: importing revenue.tasks would load the chain client
# (web3, eth-account) into every web worker that never delivers anything.
POST_TRADE_JOBS_RUN = "revenue.tasks.post_trade_jobs_run"
REVENUE_DELIVERY_RUN = "revenue.tasks.revenue_delivery_run"


def task_publish(name: str, **options: Any) -> None:
    if app.conf.task_always_eager:  # run in process (tests): send_task never runs eagerly
        app.tasks[name].apply_async(retry=False, **options)
    else:
        app.send_task(name, retry=False, **options)


_window_lock = threading.Lock()
_post_trade_published_at = float("-inf")


def post_trade_jobs_dispatch(*, job_ids: list[int]) -> bool:
    """After trades commit: publish the task that turns them into revenue events. With a
    window (POST_TRADE_PUBLISH_WINDOW_SECONDS), at most one task per window from this
    process, delayed by the window and taking every job not tried yet: the trades committed
    before it runs, these included, are in it. Without one, or when tasks run in process
    (where a delay means nothing), one task with these jobs."""
    global _post_trade_published_at
    window = settings.POST_TRADE_PUBLISH_WINDOW_SECONDS
    if window <= 0 or app.conf.task_always_eager:
        return publish_safely(
            lambda: task_publish(POST_TRADE_JOBS_RUN, kwargs={"job_ids": job_ids}), what="post-trade jobs"
        )
    with _window_lock:
        now = time.monotonic()
        if now - _post_trade_published_at < window:
            return False  # the task on its way takes these jobs too
        _post_trade_published_at = now
    return publish_safely(
        lambda: task_publish(POST_TRADE_JOBS_RUN, kwargs={"job_ids": None}, countdown=window), what="post-trade jobs"
    )


def post_trade_window_reset() -> None:
    global _post_trade_published_at
    _post_trade_published_at = float("-inf")


DELIVERY_RUN_DEBOUNCE_KEY = "revenue:delivery-run:published"


def revenue_delivery_dispatch() -> bool:
    """After revenue events commit: publish one delivery run per DELIVERY_DEBOUNCE_SECONDS
    (per cache), delayed by that window so a burst of trades shares one run and one batch.
    Every event committed before the run starts is in it; anything missed is picked up by
    the periodic re-drive."""
    if not settings.DELIVERY_ENABLED:
        return False
    window = settings.DELIVERY_DEBOUNCE_SECONDS
    if window > 0:
        try:
            if not cache.add(DELIVERY_RUN_DEBOUNCE_KEY, 1, timeout=window):
                return False  # a run is already on its way
        except CACHE_ERRORS as exc:  # cache down: publishing once too often is harmless
            cache_failure_log("delivery debounce", exc)
    return publish_safely(lambda: task_publish(REVENUE_DELIVERY_RUN, countdown=window), what="on-chain delivery run")


def delivery_debounce_reset() -> None:
    cache.delete(DELIVERY_RUN_DEBOUNCE_KEY)
