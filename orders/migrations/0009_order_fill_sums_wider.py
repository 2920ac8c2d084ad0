"""An order's sums over its fills (quote_filled, fee_paid) widened to NUMERIC(52, 8):
core.fields.SUM_MAX_DIGITS. On PostgreSQL the type is widened in place (more
precision, the same scale: no rewrite of the table). On SQLite a money column is text
(core.fields) and already holds any width: the table is not remade, which Django's
AlterField would do there (twice, moving the columns)."""

import core.fields
from core.migration_ops import numeric_columns_retype
from django.db import migrations

COLUMNS = ("quote_filled", "fee_paid")


# Literal widths: this migration must not change with core.fields.
def widen(apps, schema_editor):
    numeric_columns_retype(schema_editor, table="orders_order", columns=COLUMNS, digits=52)


def narrow(apps, schema_editor):
    numeric_columns_retype(schema_editor, table="orders_order", columns=COLUMNS, digits=30)


class Migration(migrations.Migration):

    dependencies = [
        ("orders", "0008_deposit_reference"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(widen, narrow)],
            state_operations=[
                migrations.AlterField(
                    model_name="order",
                    name="fee_paid",
                    field=core.fields.MoneyField(decimal_places=8, default=0, max_digits=52),
                ),
                migrations.AlterField(
                    model_name="order",
                    name="quote_filled",
                    field=core.fields.MoneyField(decimal_places=8, default=0, max_digits=52),
                ),
            ],
        ),
    ]
