"""The inactive orders' sweep: kept a day, not expired by beat's clock after an interval; a backlog runs once (core.periodic)."""

from django.db import migrations

from core.schedules import periodic_tasks_expiry_lengthen


def coalesce(apps, schema_editor):
    periodic_tasks_expiry_lengthen(apps, names=["orders: cancel inactive accounts' live orders"])


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0011_client_order_id_leads_its_index"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(coalesce, migrations.RunPython.noop)]
