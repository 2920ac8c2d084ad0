"""The ten revenue streams and the periodic sweep, present in every database."""

from django.db import migrations


def seed(apps, schema_editor):
    from revenue.streams import STREAMS

    stream_model = apps.get_model("revenue", "RevenueStream")
    for stream_id, name, description, target in STREAMS:
        stream_model.objects.update_or_create(
            id=stream_id, defaults={"name": name, "description": description, "target_monthly": target}
        )
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every_30s, _ = interval_model.objects.get_or_create(every=30, period="seconds")
    task_model.objects.update_or_create(
        name="revenue: sweep post-trade jobs",
        defaults={"task": "revenue.tasks.post_trade_jobs_sweep", "interval": every_30s, "enabled": True},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("revenue", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
