"""SQLite databases created before money columns were text (core.fields): the tables of
revenue with a money column declared `decimal` (stored as floats) are remade with text
columns, each value converted as core.money_columns describes. A no-op on PostgreSQL and
on databases already converted (every database created since)."""

from functools import partial

from django.db import migrations

from core.money_columns import money_columns_upgrade


class Migration(migrations.Migration):
    dependencies = [
        ("revenue", "0008_staff_action"),
    ]

    operations = [
        migrations.RunPython(partial(money_columns_upgrade, app_label="revenue"), migrations.RunPython.noop),
    ]
