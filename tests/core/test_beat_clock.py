"""Celery beat's scheduler (CELERY_BEAT_SCHEDULER, core.beat) when the beat host's clock
steps back: an interval task stays due an interval after now, not after a last run the
clock has not reached again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from config.celery import app

pytestmark = pytest.mark.django_db


def _entry(task: PeriodicTask):
    scheduler = import_string(settings.CELERY_BEAT_SCHEDULER.replace(":", "."))
    return scheduler.Entry(task, app=app)


def test_an_interval_task_runs_an_interval_after_its_clock_stepped_back():
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    # It ran, then the clock stepped back an hour: its last run is an hour ahead of now.
    task = PeriodicTask.objects.create(
        name="swept",
        task="revenue.tasks.post_trade_jobs_sweep",
        interval=every,
        last_run_at=timezone.now() + timedelta(hours=1),
    )
    due = _entry(task).is_due()
    assert not due.is_due
    assert due.next <= 60, due  # an interval from now, not an hour and an interval


def test_an_interval_task_that_ran_in_the_past_is_due_as_ever():
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    ran = PeriodicTask.objects.create(
        name="ran",
        task="revenue.tasks.post_trade_jobs_sweep",
        interval=every,
        last_run_at=timezone.now() - timedelta(seconds=30),
    )
    due = _entry(ran).is_due()
    assert not due.is_due and 25 <= due.next <= 31, due
    late = PeriodicTask.objects.create(
        name="late",
        task="revenue.tasks.post_trade_jobs_sweep",
        interval=every,
        last_run_at=timezone.now() - timedelta(minutes=5),
    )
    assert _entry(late).is_due().is_due


def test_a_crontab_task_keeps_celery_s_own_rule():
    # A crontab's next time counted from "now" may be one that already ran: left alone.
    daily = CrontabSchedule.objects.create(minute="0", hour="0")
    task = PeriodicTask.objects.create(
        name="daily",
        task="revenue.tasks.post_trade_jobs_sweep",
        crontab=daily,
        last_run_at=timezone.now() + timedelta(hours=1),
    )
    entry = _entry(task)
    entry.is_due()
    assert entry.last_run_at == task.last_run_at


class _Wall:
    def __init__(self) -> None:
        self.at = timezone.now()

    def __call__(self):
        return self.at


@pytest.mark.django_db(transaction=True)  # the scheduler closes connections it finds unhealthy
def test_a_running_beat_keeps_sending_an_interval_task_after_its_clock_stepped_back(monkeypatch):
    wall = _Wall()
    monkeypatch.setattr(timezone, "now", wall)
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="swept", task="revenue.tasks.post_trade_jobs_sweep", interval=every, last_run_at=wall.at
    )
    scheduler = import_string(settings.CELERY_BEAT_SCHEDULER.replace(":", "."))(app=app)
    scheduler._finalize.cancel()  # no sync at the process's exit, the test database gone
    sent: list[str] = []
    monkeypatch.setattr(scheduler, "apply_entry", lambda entry, producer=None: sent.append(entry.name))
    monkeypatch.setattr(scheduler, "sync", lambda: None)  # the runs stay in memory

    def run(seconds: int) -> None:
        """The beat's loop over `seconds` of the wall clock: ticks until none sends (a tick
        sends one task), then a second later."""
        for _ in range(seconds):
            while scheduler.tick() == 0:
                pass
            wall.at += timedelta(seconds=1)

    run(61)
    assert sent.count("swept") == 1  # due a minute after its last run
    wall.at -= timedelta(hours=1)  # the clock stepped back an hour
    run(125)
    assert sent.count("swept") >= 3, sent  # every minute still, not an hour later
