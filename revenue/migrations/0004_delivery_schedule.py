"""The on-chain delivery re-drive, run by django-celery-beat in every database."""

from django.conf import settings
from django.db import migrations

TASK_NAME = "revenue: re-drive on-chain delivery"


def schedule(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    seconds = int(getattr(settings, "DELIVERY_POLL_INTERVAL_SECONDS", 60))
    every, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
    task_model.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": "revenue.tasks.revenue_delivery_redrive",
            "interval": every,
            "queue": "chain",
            # A run that could not start within one interval is replaced by the next one.
            "expire_seconds": seconds,
            "enabled": True,
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("revenue", "0003_delivery"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
