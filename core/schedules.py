"""Periodic tasks as data migrations write them (django-celery-beat's schedules in the
database: every database gets them, the interval from a setting at the time it migrates)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from core.periodic import PERIODIC_EXPIRE_SECONDS


def periodic_task_schedule(apps: Any, *, name: str, task: str, seconds: int, queue: str | None = None) -> None:
    """`task` every `seconds` under `name` (created or updated), with the historical models
    of the migration that calls it."""
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
    defaults: dict[str, Any] = {
        "task": task,
        "interval": every,
        # Dropped by the broker if not taken within a day; a backlog runs once (core.periodic).
        "expire_seconds": PERIODIC_EXPIRE_SECONDS,
        "enabled": True,
    }
    if queue is not None:
        defaults["queue"] = queue
    task_model.objects.update_or_create(name=name, defaults=defaults)
    _beat_reload(apps)


def periodic_task_unschedule(apps: Any, *, name: str) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=name).delete()


def periodic_tasks_expiry_lengthen(apps: Any, *, names: list[str]) -> None:
    """The periodic tasks `names` kept a day, as periodic_task_schedule now writes them: the
    migrations before core.periodic left them an expiry of one interval by beat's clock
    (a worker's clock that far ahead discarded every run), or none (a backlog without bound)."""
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    task_model.objects.filter(name__in=names).update(expire_seconds=PERIODIC_EXPIRE_SECONDS)
    _beat_reload(apps)


def _beat_reload(apps: Any) -> None:
    """A beat already running reloads the tasks (django-celery-beat's change marker, which
    its signals set on the real models only, not on a migration's)."""
    marker = apps.get_model("django_celery_beat", "PeriodicTasks")
    marker.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
