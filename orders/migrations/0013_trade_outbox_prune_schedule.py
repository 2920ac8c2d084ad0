"""The deletion of consumed trade outbox rows (orders.tasks.trade_outbox_prune), run by
django-celery-beat in every database."""

from django.conf import settings
from django.db import migrations

from core.schedules import periodic_task_schedule, periodic_task_unschedule

TASK_NAME = "orders: delete consumed trade outbox rows"


def schedule(apps, schema_editor):
    seconds = int(getattr(settings, "TRADE_OUTBOX_PRUNE_INTERVAL_SECONDS", 3600))
    periodic_task_schedule(apps, name=TASK_NAME, task="orders.tasks.trade_outbox_prune", seconds=seconds)


def unschedule(apps, schema_editor):
    periodic_task_unschedule(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0012_periodic_runs_coalesced"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
