"""The sweep of inactive accounts' live orders, run by django-celery-beat in every database."""

from django.conf import settings
from django.db import migrations

TASK_NAME = "orders: cancel inactive accounts' live orders"


def schedule(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    seconds = int(getattr(settings, "INACTIVE_ORDERS_SWEEP_INTERVAL_SECONDS", 60))
    every, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
    task_model.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": "orders.tasks.inactive_orders_sweep",
            "interval": every,
            # A run that could not start within one interval is replaced by the next one.
            "expire_seconds": seconds,
            "enabled": True,
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0006_verbose_names"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
