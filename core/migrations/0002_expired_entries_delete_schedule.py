"""The deletion of expired cache entries and sessions (core.tasks.expired_entries_delete),
run by django-celery-beat in every database."""

from django.conf import settings
from django.db import migrations

from core.schedules import periodic_task_schedule, periodic_task_unschedule

TASK_NAME = "core: delete expired cache entries and sessions"


def schedule(apps, schema_editor):
    seconds = int(getattr(settings, "EXPIRED_ENTRIES_DELETE_INTERVAL_SECONDS", 3600))
    periodic_task_schedule(apps, name=TASK_NAME, task="core.tasks.expired_entries_delete", seconds=seconds)


def unschedule(apps, schema_editor):
    periodic_task_unschedule(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_cache_table"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
