"""Migrations that the release before can run beside: a column added to a table that existed
has its default in the database (db_default), so that the processes of the release before,
which do not know the column, still insert rows while the new release's `migrate` runs ahead
of their restart (a container platform's release job, a host upgraded before the others).
With Django's `default` alone the column is NOT NULL without a default: the old chain worker's
every new delivery batch failed ('null value in column "left_out_item_ids"') until it was
replaced, the old web's staff actions too."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddField, CreateModel
from django.db.models import NOT_PROVIDED

from revenue.models import ChainDeployment, DeliveryBatch

PROJECT_APPS = ("core", "accounts", "orders", "revenue", "flywheel")


def columns_added_to_existing_tables() -> list[tuple[str, str, str]]:
    """(app, model, field) of every AddField of a NOT NULL column to a model that an earlier
    migration created."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    found = []
    for (app, _name), migration in sorted(loader.disk_migrations.items()):
        if app not in PROJECT_APPS:
            continue
        created_here = {op.name_lower for op in migration.operations if isinstance(op, CreateModel)}
        for op in migration.operations:
            if not isinstance(op, AddField) or op.model_name_lower in created_here:
                continue
            if op.field.null or op.field.many_to_many:
                continue
            found.append((app, op.model_name_lower, op.name))
    return found


def test_every_column_added_to_an_existing_table_has_its_default_in_the_database():
    missing = []
    for app, model_name, field_name in columns_added_to_existing_tables():
        field = apps.get_model(app, model_name)._meta.get_field(field_name)
        if field.db_default is NOT_PROVIDED:
            missing.append(f"{app}.{model_name}.{field_name}")
    assert missing == []


@pytest.mark.django_db
def test_the_release_before_still_inserts_a_delivery_batch():
    """The chain worker of the release before 0016 and 0019 (no broadcast_block, no
    left_out_item_ids) sends a batch while the new release's migrations are applied."""
    deployment = ChainDeployment.objects.create(
        chain_id=31337,
        contract_address="0x" + "1" * 40,
        signer_address="0x" + "2" * 40,
        deployed_at="2026-12-07T00:00Z",
    )
    known_before = [
        field.column
        for field in DeliveryBatch._meta.concrete_fields
        if field.name not in ("id", "broadcast_block", "left_out_item_ids") and field.db_default is NOT_PROVIDED
    ]
    row = DeliveryBatch(deployment=deployment, size=1, value_wei="1", nonce=0, gas=21000, max_fee_per_gas=1,
                        max_priority_fee_per_gas=1, submitted_at="2026-12-07T00:00Z")  # fmt: skip
    values = [field.get_db_prep_save(getattr(row, field.attname), connection)
              for field in DeliveryBatch._meta.concrete_fields if field.column in known_before]  # fmt: skip
    table = connection.ops.quote_name(DeliveryBatch._meta.db_table)
    names = ", ".join(connection.ops.quote_name(column) for column in known_before)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(values))})", values)  # noqa: S608
    batch = DeliveryBatch.objects.get()
    assert (batch.broadcast_block, batch.left_out_item_ids) == (0, [])
