"""The delivery re-drive and the post-trade sweep (which had no expiry: a worker down a day
found 2,880 sweeps queued): kept a day, not expired by beat's clock after an interval; a backlog runs once (core.periodic)."""

from django.db import migrations

from core.schedules import periodic_tasks_expiry_lengthen


def coalesce(apps, schema_editor):
    periodic_tasks_expiry_lengthen(
        apps, names=["revenue: re-drive on-chain delivery", "revenue: sweep post-trade jobs"]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("revenue", "0019_batch_left_out_items"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(coalesce, migrations.RunPython.noop)]
