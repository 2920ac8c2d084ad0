"""The removal of expired refresh tokens' rows, run by django-celery-beat in every database."""

from django.conf import settings
from django.db import migrations

from core.schedules import periodic_task_schedule, periodic_task_unschedule

TASK_NAME = "accounts: delete expired refresh tokens"


def schedule(apps, schema_editor):
    seconds = int(getattr(settings, "REFRESH_TOKENS_FLUSH_INTERVAL_SECONDS", 3600))
    periodic_task_schedule(apps, name=TASK_NAME, task="accounts.tasks.refresh_tokens_expired_flush", seconds=seconds)


def unschedule(apps, schema_editor):
    periodic_task_unschedule(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_api_keys"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
