"""A real Celery worker whose clock runs ahead of beat's, and a backlog of periodic runs.

Beat sent each periodic run with an expiry one interval after it sent it, by beat's clock;
the worker checks it against its own. A worker five minutes ahead (the same as a beat five
minutes behind, which is what this test makes: the runs are published as beat's entry
publishes them, from the periodic task's row, by a clock five minutes slow) discarded every
run of the inactive orders' sweep and of the delivery re-drive as expired. Now the runs
carry a coalescing header instead (core.periodic): all are taken, and a backlog of them
runs the task once."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.reliability.harness import Platform, Rig
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

SWEEP = "orders.tasks.inactive_orders_sweep"
SWEEP_NAME = "orders: cancel inactive accounts' live orders"
BEAT_BEHIND = timedelta(minutes=5)
BACKLOG = 20


def beat_options(platform: Platform, name: str, *, beat_now: datetime) -> dict[str, Any]:
    """What django-celery-beat's entry publishes for the periodic task `name`: its row's
    headers (with the task's name, as the entry adds it) and its expiry, counted from
    `beat_now` as Celery counts a number of seconds from its own clock."""
    ((expire_seconds, headers),) = platform.query(
        "SELECT expire_seconds, headers FROM django_celery_beat_periodictask WHERE name = %s", [name]
    )
    options: dict[str, Any] = {"headers": {**json.loads(headers or "{}"), "periodic_task_name": name}}
    if expire_seconds:
        options["expires"] = beat_now + timedelta(seconds=expire_seconds)
    return options


def outcomes(log: str, task_ids: list[str]) -> dict[str, str]:
    """Each task id the worker's log has finished with: "ran" (a count returned), "skipped"
    (None: coalesced) or "discarded" (expired)."""
    found: dict[str, str] = {}
    for task_id in task_ids:
        done = re.search(rf"\[{task_id}\] succeeded in [0-9.e-]+s: (\S+)", log)
        if done is not None:
            found[task_id] = "skipped" if done.group(1) == "None" else "ran"
        elif re.search(rf"Discarding revoked task: \S+\[{task_id}\]", log):
            found[task_id] = "discarded"
    return found


@pytest.mark.timeout(180)
def test_a_worker_ahead_of_beat_takes_its_runs_and_a_backlog_runs_once(rig: Rig) -> None:
    broker = rig.redis()
    platform = rig.platform(redis_url=broker.url, seed={"traders": 1})
    publisher = rig.publisher(platform)
    beat_now = datetime.now(UTC) - BEAT_BEHIND
    # Published while no worker runs: the backlog a worker finds when it comes back.
    task_ids = [publisher.send(SWEEP, **beat_options(platform, SWEEP_NAME, beat_now=beat_now)) for _ in range(BACKLOG)]
    worker = rig.worker(platform, queues="celery")

    def every_one_finished() -> bool:
        return len(outcomes(worker.log_path.read_text(errors="replace"), task_ids)) == BACKLOG

    wait_until(every_one_finished, timeout=60, interval=0.3, what="the worker to finish every run")
    finished = list(outcomes(worker.log_path.read_text(errors="replace"), task_ids).values())
    assert finished.count("discarded") == 0, finished
    assert finished.count("ran") == 1 and finished.count("skipped") == BACKLOG - 1, finished
