"""Periodic tasks that neither depend on the hosts' clocks agreeing nor pile up.

Beat used to send each periodic run with an expiry one interval after it sent it, by beat's
clock, which the worker checks against its own: a worker whose clock ran more than an
interval ahead of beat's (60 s for the delivery re-drive and the inactive orders' sweep)
discarded every run as expired, and delivery stalled until the stall alert (10 minutes).
Without the expiry, the runs sent while no worker took them (a worker down for an hour: 60
re-drives) would each run in turn once one is back.

Here a run beat sends (django-celery-beat names its periodic task in a header) is skipped
while another run of the same task started or finished less than half the periodic task's
interval ago (its interval as it is now, an operator's change included): the claim is the
shared cache's add, whose expiry is the cache server's (Redis) or the database's
(core.cache.AtomicDatabaseCache), never a host's. Beat's cadence always runs; a backlog runs
once. The expiry kept on the runs (PERIODIC_EXPIRE_SECONDS, a day, core.schedules) only
bounds what a broker holds for a worker down that long. A run called directly (tests, a
staff trigger, `celery call`) always runs."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from django.core.cache import cache
from django.db import DatabaseError
from django_celery_beat.models import PeriodicTask

from core.cache import CACHE_ERRORS, cache_failure_log

logger = logging.getLogger("core.periodic")

# django-celery-beat's header on every run it sends (schedulers.ModelEntry).
PERIODIC_TASK_HEADER = "periodic_task_name"
# A periodic run not taken within a day is dropped: bounds what the broker keeps for a
# worker that long down; far beyond any clock difference between hosts.
PERIODIC_EXPIRE_SECONDS = 24 * 3600


_CLAIM_ERRORS: tuple[type[BaseException], ...] = (*CACHE_ERRORS, DatabaseError)


def periodic_coalesce_seconds(*, periodic_task_name: str) -> int | None:
    """How long a run of the periodic task keeps the next one away: half its interval, so
    beat's own cadence always runs and a backlog runs once. None: not an interval task
    (a crontab's, or one deleted since it was sent): not coalesced."""
    task = PeriodicTask.objects.filter(name=periodic_task_name).select_related("interval").first()
    if task is None or task.interval is None:
        return None
    every = task.interval.schedule.run_every.total_seconds()
    return max(1, int(every // 2))


def _claim_key(task_name: str) -> str:
    return f"periodic-run:{task_name}"


def periodic_run_claim(*, task_name: str, seconds: int) -> bool:
    """True when no run of `task_name` started or finished in the last `seconds` (this one
    now holds the claim). The cache unreachable: True (a run too many is harmless, every
    periodic task being idempotent; one lost is not)."""
    try:
        return bool(cache.add(_claim_key(task_name), 1, timeout=seconds))
    except _CLAIM_ERRORS as exc:
        cache_failure_log("periodic run claim", exc)
        return True


def periodic_run_done(*, task_name: str, seconds: int) -> None:
    """The claim renewed from the run's end: a run longer than `seconds` still keeps the
    runs queued behind it away (add again, for the add's clock; see core.cache)."""
    try:
        cache.delete(_claim_key(task_name))
        cache.add(_claim_key(task_name), 1, timeout=seconds)
    except _CLAIM_ERRORS as exc:
        cache_failure_log("periodic run claim", exc)


def _header(request: Any, name: str) -> Any:
    """A message header: top-level in a worker's request, under `headers` in Task.apply's."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


class PlatformTask(Task):
    """Every task of the platform (config.celery sets it as the app's task class)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = _header(self.request, PERIODIC_TASK_HEADER)
        seconds = None if name is None else periodic_coalesce_seconds(periodic_task_name=str(name))
        if seconds is None:
            return super().__call__(*args, **kwargs)
        if not periodic_run_claim(task_name=self.name, seconds=seconds):
            logger.info("periodic run skipped: another ran less than %s s ago", seconds, extra={"task": self.name})
            return None
        try:
            return super().__call__(*args, **kwargs)
        finally:
            periodic_run_done(task_name=self.name, seconds=seconds)
