"""The refresh tokens' flush: kept a day, not expired by beat's clock after an interval; a backlog runs once (core.periodic)."""

from django.db import migrations

from core.schedules import periodic_tasks_expiry_lengthen


def coalesce(apps, schema_editor):
    periodic_tasks_expiry_lengthen(apps, names=["accounts: delete expired refresh tokens"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_refresh_tokens_stored_as_digests"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(coalesce, migrations.RunPython.noop)]
