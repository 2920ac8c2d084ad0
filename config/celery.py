"""The Celery application. Settings come from Django settings (CELERY_* names).

Worker and beat log through Django's LOGGING (core.logging.logging_config: JSON lines with
LOG_FORMAT=json), not Celery's own handlers; every task adopts the correlation id its
publisher carried in the message headers."""

import logging.config
import os
from pathlib import Path

from celery import Celery
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun
from django.conf import settings

from config.broker import broker_redis_transport_register
from core.logging import adopt_correlation_id, correlation_id_clear, correlation_id_get

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

broker_redis_transport_register()  # redis:// brokers: a worker survives a Redis outage
# Every task's class: periodic runs coalesce by the cache, not by the hosts' clocks (core.periodic).
app = Celery("platform", task_cls="core.periodic:PlatformTask")
# core and the apps reach this app as celery.current_app, never importing config: Celery's
# Django fixup makes it the default app, every thread's (tests/config/test_celery.py).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _filesystem_broker_folders() -> None:
    """The embedded filesystem transport needs its folders before the first message."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@setup_logging.connect
def _on_logging(**kwargs: object) -> None:
    """Worker and beat start here. A receiver of this signal replaces Celery's logging
    set-up (its root handler, its format, `-l`): the processes log as the web does."""
    logging.config.dictConfig(settings.LOGGING)
    logging.captureWarnings(True)  # Python warnings as log lines too
    # The web's publisher folder is made by scripts/run.
    _filesystem_broker_folders()


# Celery's own `correlation_id` is the task id (a message property): the platform's id
# travels in a header of its own.
CORRELATION_HEADER = "platform_correlation_id"


@before_task_publish.connect
def _carry_correlation_id(headers: dict[str, object] | None = None, **kwargs: object) -> None:
    if headers is not None:
        current = correlation_id_get()
        if current != "-":
            headers.setdefault(CORRELATION_HEADER, current)


@task_prerun.connect
def _adopt_correlation_id(task: object = None, **kwargs: object) -> None:
    """The task logs under its publisher's correlation id, or (none carried: beat, the
    engine's announcements) under its own task id, so its lines can be found together."""
    request = getattr(task, "request", None)
    carried = getattr(request, CORRELATION_HEADER, None) or (getattr(request, "headers", None) or {}).get(
        CORRELATION_HEADER
    )
    adopt_correlation_id(str(carried) if carried else getattr(request, "id", None))


@task_postrun.connect
def _drop_correlation_id(**kwargs: object) -> None:
    """The task's id ends with it: the solo pool (the chain worker) runs tasks on the
    consumer's own thread, whose next lines ("Task ... received", "Connection to broker
    lost") carried the id of the task before."""
    correlation_id_clear()
