"""The correlation id of a Celery task (config/celery.py): adopted when the task starts,
dropped when it ends. The chain worker's solo pool runs tasks on the consumer's own thread;
its next lines ("Task ... received", "Connection to broker lost") were logged under the id
of the task before (20 of 146 "received" lines of one scripts/serve run named another task)."""

from __future__ import annotations

import contextvars
import threading
from types import SimpleNamespace

from celery import current_app
from celery.signals import task_postrun, task_prerun

from config.celery import CORRELATION_HEADER, app
from core.logging import correlation_id_get


class _Task:
    request = SimpleNamespace(id="task-1", headers={CORRELATION_HEADER: "request-1"})


def _run_task_signals() -> tuple[str, str]:
    task = _Task()
    task_prerun.send(sender=task, task_id="task-1", task=task, args=(), kwargs={})
    during = correlation_id_get()
    task_postrun.send(sender=task, task_id="task-1", task=task, args=(), kwargs={}, retval=None, state="SUCCESS")
    return during, correlation_id_get()


def test_a_task_logs_under_its_publishers_id_and_what_follows_under_none() -> None:
    during, after = contextvars.copy_context().run(_run_task_signals)
    assert during == "request-1"
    assert after == "-"


def test_the_platforms_celery_app_is_every_threads_current_app():
    # core and the apps publish through celery.current_app (they never import config): were
    # it not the default app (Celery's Django fixup), a thread of its own would get a
    # fallback app with the default broker (amqp://localhost).
    found = []
    thread = threading.Thread(target=lambda: found.append(current_app._get_current_object()))
    thread.start()
    thread.join()
    assert found == [app]
