"""The correlation id of a Celery task (config/celery.py): adopted when the task starts,
dropped when it ends. The chain worker's solo pool runs tasks on the consumer's own thread;
its next lines ("Task ... received", "Connection to broker lost") were logged under the id
of the task before (20 of 146 "received" lines of one scripts/serve run named another task)."""

from __future__ import annotations

import contextvars
import threading
from types import SimpleNamespace

import pytest
from celery import current_app
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from kombu import Connection

from config.celery import CORRELATION_HEADER, app
from config.settings.base import EMBEDDED_BROKER_URL
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


@pytest.mark.parametrize("url", [EMBEDDED_BROKER_URL, settings.CELERY_BROKER_URL])
def test_the_server_free_brokers_name_their_host(url: str, caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    """The embedded default (and the tests' own broker): kombu warned "No hostname was
    supplied" at each process's start (eight WARNING lines in every `make run`'s logs)."""
    folders = {name: str(tmp_path) for name in ("data_folder_in", "data_folder_out", "control_folder")}
    with caplog.at_level("WARNING", logger="kombu.connection"):
        Connection(url, transport_options=folders).info()
    assert not caplog.records, [r.getMessage() for r in caplog.records]
