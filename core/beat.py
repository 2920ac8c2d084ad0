"""Celery beat's scheduler: django-celery-beat's DatabaseScheduler, whose interval tasks
survive the beat host's clock stepping back.

An interval task is due `every` seconds after its last run, both by the wall clock, and
the scheduler's heap holds the wall-clock time each task is next due at. When that clock
steps back (an NTP correction, a host set right after running ahead), the last runs and the
heap's times are in the future and celery waited for the clock to pass them again: stepped
back an hour, every periodic task (the post-trade sweep, the delivery re-drive, the inactive
orders' sweep, the token flush) stopped for an hour. Here a last run later than now is taken
as a run just now (the task is due an interval later), and a tick that finds the clock
behind the one before rebuilds the heap from the tasks. One clock, django.utils.timezone.now
(the one django-celery-beat's interval schedules read)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from celery import schedules
from celery.utils.time import maybe_make_aware
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler as BeatDatabaseScheduler
from django_celery_beat.schedulers import ModelEntry

# A last run this far ahead of the clock is not a step (a save's rounding, another beat's clock).
STEP_TOLERANCE = timedelta(seconds=1)
BEAT_SYNC_SECONDS = 30


def last_run_within(*, last_run_at: datetime | None, now: datetime) -> datetime | None:
    """The last run as an interval's schedule should count it: never later than now
    (beyond STEP_TOLERANCE)."""
    if last_run_at is None:
        return None
    if maybe_make_aware(last_run_at) > maybe_make_aware(now) + STEP_TOLERANCE:
        return now
    return last_run_at


class ClockSteppedEntry(ModelEntry):
    def _default_now(self) -> datetime:
        return timezone.now()

    def default_now(self) -> datetime:
        return timezone.now()

    def is_due(self) -> Any:
        # Intervals only: a crontab's next time after "now" may be one that already ran.
        if isinstance(self.schedule, schedules.schedule):
            last_run_at: datetime | None = getattr(self, "last_run_at", None)
            self.last_run_at = last_run_within(last_run_at=last_run_at, now=self._default_now())
        return super().is_due()


class DatabaseScheduler(BeatDatabaseScheduler):
    Entry = ClockSteppedEntry
    # The tasks' last runs are written to the database every 30 s (celery: every 3 minutes):
    # the latest of them is how /healthz and /metrics tell that beat sends (core.health).
    sync_every = BEAT_SYNC_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ticked_at: datetime | None = None
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> Any:
        now = timezone.now()
        if self._ticked_at is not None and now < self._ticked_at - STEP_TOLERANCE:
            self._heap = None  # rebuilt from the tasks, their last runs no later than now
        self._ticked_at = now
        return super().tick(*args, **kwargs)
