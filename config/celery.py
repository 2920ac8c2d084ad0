"""The Celery application. Settings come from Django settings (CELERY_* names)."""

import os
from pathlib import Path

from celery import Celery
from celery.signals import after_setup_logger, before_task_publish, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _filesystem_broker_folders() -> None:
    """The embedded filesystem transport needs its folders before the first message."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@after_setup_logger.connect
def _on_logging(**kwargs: object) -> None:
    # Worker and beat start here; the web's publisher folder is made by scripts/run.
    _filesystem_broker_folders()


@before_task_publish.connect
def _carry_correlation_id(headers: dict[str, object] | None = None, **kwargs: object) -> None:
    from core.logging import correlation_id_get

    if headers is not None:
        headers.setdefault("correlation_id", correlation_id_get())


@task_prerun.connect
def _adopt_correlation_id(task: object = None, **kwargs: object) -> None:
    from core.logging import adopt_correlation_id

    request = getattr(task, "request", None)
    adopt_correlation_id(getattr(request, "correlation_id", None) if request else None)
