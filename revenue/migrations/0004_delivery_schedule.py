"""The on-chain delivery re-drive, run by django-celery-beat in every database."""

from django.conf import settings
from django.db import migrations

from core.schedules import periodic_task_schedule, periodic_task_unschedule

TASK_NAME = "revenue: re-drive on-chain delivery"


def schedule(apps, schema_editor):
    seconds = int(getattr(settings, "DELIVERY_POLL_INTERVAL_SECONDS", 60))
    periodic_task_schedule(
        apps, name=TASK_NAME, task="revenue.tasks.revenue_delivery_redrive", seconds=seconds, queue="chain"
    )


def unschedule(apps, schema_editor):
    periodic_task_unschedule(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("revenue", "0003_delivery"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
