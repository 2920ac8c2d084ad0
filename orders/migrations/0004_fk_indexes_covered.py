"""Five foreign-key indexes dropped: each is the leading column of a composite index (or
unique constraint) that serves the same look-ups, and every placement or trade paid for
maintaining it (docs/performance.md, "Indexes written on every trade").

The state says db_index=False; the database only drops the indexes by name (the same on
SQLite and PostgreSQL), since Django's own AlterField would remake the tables on SQLite
and drop and re-validate the foreign keys on PostgreSQL."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# (table, column, index name as Django created it in 0001_initial)
COVERED = [
    ("orders_order", "user_id", "orders_order_user_id_e9b59eb1"),  # order_user_recent
    ("orders_orderevent", "order_id", "orders_orderevent_order_id_b26297f3"),  # order_event_by_order
    ("orders_trade", "market_id", "orders_trade_market_id_26c631ae"),  # trade_market_recent
    ("orders_trade", "taker_user_id", "orders_trade_taker_user_id_0f328ba1"),  # trade_taker_user
    ("orders_trade", "maker_user_id", "orders_trade_maker_user_id_a5c36727"),  # trade_maker_user
]


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0003_money_columns_text_on_sqlite"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")',
                )
                for table, column, name in COVERED
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="order",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="orders",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="orderevent",
                    name="order",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="orders.order",
                    ),
                ),
                migrations.AlterField(
                    model_name="trade",
                    name="maker_user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="trade",
                    name="market",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="trades",
                        to="orders.market",
                    ),
                ),
                migrations.AlterField(
                    model_name="trade",
                    name="taker_user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        )
    ]
