"""SQLite databases created before money columns were text (core.fields): the tables of
orders with a money column declared `decimal` (stored as floats) are remade with text
columns, each value converted as core.money_columns describes. A no-op on PostgreSQL and
on databases already converted (every database created since)."""

from django.db import migrations

from core.money_columns import money_columns_upgrade


def money_columns_text(apps, schema_editor):
    """Money columns of orders as text on SQLite (core.money_columns)."""
    money_columns_upgrade(apps, schema_editor, app_label="orders")


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_trade_outbox"),
    ]

    operations = [migrations.RunPython(money_columns_text, migrations.RunPython.noop)]
