"""Periodic tasks as data migrations write them (django-celery-beat's schedules in the
database: every database gets them, the interval from a setting at the time it migrates)."""

from __future__ import annotations

from typing import Any


def periodic_task_schedule(apps: Any, *, name: str, task: str, seconds: int, queue: str | None = None) -> None:
    """`task` every `seconds` under `name` (created or updated), with the historical models
    of the migration that calls it."""
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
    defaults: dict[str, Any] = {
        "task": task,
        "interval": every,
        # A run that could not start within one interval is replaced by the next one.
        "expire_seconds": seconds,
        "enabled": True,
    }
    if queue is not None:
        defaults["queue"] = queue
    task_model.objects.update_or_create(name=name, defaults=defaults)


def periodic_task_unschedule(apps: Any, *, name: str) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=name).delete()
