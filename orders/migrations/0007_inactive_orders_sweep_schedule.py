"""The sweep of inactive accounts' live orders, run by django-celery-beat in every database."""

from django.conf import settings
from django.db import migrations

from core.schedules import periodic_task_schedule, periodic_task_unschedule

TASK_NAME = "orders: cancel inactive accounts' live orders"


def schedule(apps, schema_editor):
    seconds = int(getattr(settings, "INACTIVE_ORDERS_SWEEP_INTERVAL_SECONDS", 60))
    periodic_task_schedule(apps, name=TASK_NAME, task="orders.tasks.inactive_orders_sweep", seconds=seconds)


def unschedule(apps, schema_editor):
    periodic_task_unschedule(apps, name=TASK_NAME)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0006_verbose_names"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
