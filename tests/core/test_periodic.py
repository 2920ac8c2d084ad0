"""Periodic runs (core.periodic): a run beat sends carries a coalescing header instead of an
expiry by beat's clock; a run of the same task started or finished less than that ago makes
it a no-op, so a backlog runs once and no host's clock decides."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.tasks import refresh_tokens_expired_flush
from core.periodic import PERIODIC_EXPIRE_SECONDS, PERIODIC_TASK_HEADER
from orders.tasks import inactive_orders_sweep
from tests.factories import UserFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_claims():
    cache.clear()
    yield
    cache.clear()


SWEEP = "orders: cancel inactive accounts' live orders"
FLUSH = "accounts: delete expired refresh tokens"


def _beat_run(name: str = SWEEP, task=inactive_orders_sweep):
    """A run as beat sends it: django-celery-beat names its periodic task in a header."""
    return task.apply(headers={PERIODIC_TASK_HEADER: name}).get()


def _interval_set(name: str, seconds: int) -> None:
    task = PeriodicTask.objects.get(name=name)
    task.interval = IntervalSchedule.objects.create(every=seconds, period=IntervalSchedule.SECONDS)
    task.save()


def test_a_backlog_of_beat_runs_runs_once_and_direct_calls_always_run():
    UserFactory(is_active=False)
    assert [_beat_run() for _ in range(5)] == [0, None, None, None, None]
    assert inactive_orders_sweep() == 0  # called directly (no header): not coalesced
    assert inactive_orders_sweep.apply().get() == 0


def test_beat_s_cadence_runs_every_time_half_its_interval_as_it_is_now():
    _interval_set(SWEEP, 2)  # an operator's change in the admin: half of it, not of the minute it was
    assert _beat_run() == 0
    assert _beat_run() is None
    # A skipped run leaves the claim as it was: polled until it expired (1 s), then it runs.
    wait_until(lambda: _beat_run() == 0, timeout=10, interval=0.2, what="the claim to expire")


def test_a_run_of_a_periodic_task_deleted_since_it_was_sent_is_not_coalesced():
    assert [_beat_run("a task no longer there") for _ in range(2)] == [0, 0]


def test_another_task_s_claim_does_not_hold_this_one():
    assert _beat_run() == 0
    assert _beat_run(FLUSH, refresh_tokens_expired_flush) is not None


def test_the_cache_unreachable_runs_the_task(monkeypatch):
    def down(*args, **kwargs):
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(cache, "add", down)
    monkeypatch.setattr(cache, "delete", down)
    assert [_beat_run(), _beat_run()] == [0, 0]


def test_every_periodic_task_is_kept_a_day_not_an_interval():
    """The migrations left each with an expiry of one interval by beat's clock (the
    post-trade sweep with none): a worker whose clock ran an interval ahead of beat's
    discarded every run."""
    tasks = list(PeriodicTask.objects.select_related("interval"))
    assert {task.task for task in tasks} >= {
        "revenue.tasks.revenue_delivery_redrive",
        "revenue.tasks.post_trade_jobs_sweep",
        "orders.tasks.inactive_orders_sweep",
        "accounts.tasks.refresh_tokens_expired_flush",
    }
    for task in tasks:
        assert task.expire_seconds == PERIODIC_EXPIRE_SECONDS, task.name
