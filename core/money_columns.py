"""Upgrade of SQLite databases created before money columns were text (core.fields).

Until then a MoneyField was Django's DecimalField: declared `decimal` on SQLite, whose
NUMERIC affinity stored every amount as a 64-bit float (or an integer when whole). Such a
database still works, inexactly. `money_columns_upgrade` (run by a data migration of each
app that owns money columns) remakes every table with such a column, the way Django
remakes a SQLite table (new table from the model, copy, drop, rename, indexes), converting
each stored number on the way into the fixed-width text the field writes today.

What can be recovered: a float keeps about 15-17 significant digits, so the value read
back is the shortest decimal that names the same float (its repr) rounded to the
column's 8 places. An amount written with at most 15 significant digits comes back
exactly as it was written; a longer one comes back as the float kept it (the database
had already lost the rest). The float nearest the largest amount is 1e22, one digit too
wide for the column: a float beyond MAX_AMOUNT is read as MAX_AMOUNT (with its sign).

A table whose money columns are already text (every database created since, and the
tables this upgrade remade) is not remade; a number or a non-canonical text left in a
text column (a row copied by a remake between the two versions) is rewritten in place.
Nothing happens on PostgreSQL, whose NUMERIC columns were always exact."""

from __future__ import annotations

import copy
from decimal import Decimal, InvalidOperation
from typing import Any

from django.apps.registry import Apps

from core.fields import sqlite_money_decode, sqlite_money_encode
from core.money import MAX_AMOUNT, QUANTUM, exact_arithmetic

__all__ = ["money_columns_upgrade", "sqlite_money_legacy_text"]

LEGACY_FUNCTION = "money_legacy_text"


def sqlite_money_legacy_text(value: object) -> str | None:
    """The column's text for what an old money column holds: a float (its repr, rounded
    to 8 places, clamped to the column's range), an integer, or text."""
    if value is None:
        return None
    with exact_arithmetic():
        if isinstance(value, float):
            amount = Decimal(repr(value))
        elif isinstance(value, int):
            amount = Decimal(value)
        elif isinstance(value, str):
            try:
                amount = sqlite_money_decode(value.strip())
            except InvalidOperation:
                raise ValueError(f"not an amount in a money column: {value!r}") from None
        else:
            raise ValueError(f"not an amount in a money column: {value!r}")
        if not amount.is_finite():
            raise ValueError(f"not an amount in a money column: {value!r}")
        amount = amount.quantize(QUANTUM)
        amount = max(-MAX_AMOUNT, min(MAX_AMOUNT, amount))
        return sqlite_money_encode(amount)


def _money_columns(model: Any) -> list[str]:
    return [
        str(field.column)
        for field in model._meta.local_concrete_fields
        if field.get_internal_type() == "MoneyField" and not field.generated
    ]


def money_columns_upgrade(apps: Any, schema_editor: Any, *, app_label: str) -> None:
    """Every managed model of `app_label` (historical `apps` of a migration): remake its
    table if a money column is not declared text; rewrite non-canonical values left in
    text money columns. A no-op on other backends and on databases already converted."""
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    connection.ensure_connection()
    connection.connection.create_function(LEGACY_FUNCTION, 1, sqlite_money_legacy_text, deterministic=True)
    tables = set(connection.introspection.table_names())
    for model in apps.get_app_config(app_label).get_models():
        meta = model._meta
        if not meta.managed or meta.proxy or meta.db_table not in tables:
            continue
        money = _money_columns(model)
        if not money:
            continue
        declared = _declared_types(connection, meta.db_table)
        if any(declared.get(column, "").lower() != "text" for column in money):
            _table_remake(schema_editor, model, money)
        else:
            _values_canonicalize(schema_editor, meta.db_table, money)


def _declared_types(connection: Any, table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA table_info({connection.ops.quote_name(table)})")
        return {str(row[1]): str(row[2]) for row in cursor.fetchall()}


def _values_canonicalize(schema_editor: Any, table: str, columns: list[str]) -> None:
    quote = schema_editor.quote_name
    for column in columns:
        name = quote(column)
        schema_editor.execute(
            f"UPDATE {quote(table)} SET {name} = {LEGACY_FUNCTION}({name}) "  # noqa: S608  (identifiers from the model)
            f"WHERE {name} IS NOT NULL AND (typeof({name}) != 'text' OR {name} != {LEGACY_FUNCTION}({name}))"
        )


def _table_remake(schema_editor: Any, model: Any, money: list[str]) -> None:
    """Django's SQLite table remake (DatabaseSchemaEditor._remake_table) with the money
    columns converted in the copy, so the new table's CHECK constraints see the column's
    text form from the first row."""
    quote = schema_editor.quote_name
    fields = list(model._meta.local_concrete_fields)
    body: dict[str, Any] = {
        field.name: field.clone() if field.is_relation and field.remote_field.model is model else field
        for field in fields
    }
    meta = type(
        "Meta",
        (),
        {
            "app_label": model._meta.app_label,
            "db_table": f"new__{model._meta.db_table}",
            "unique_together": model._meta.unique_together,
            "indexes": model._meta.indexes,
            "constraints": list(model._meta.constraints),
            "apps": Apps(),
        },
    )
    new_body = copy.deepcopy(body)
    new_body["Meta"] = meta
    new_body["__module__"] = model.__module__
    new_model: Any = type(f"New{model._meta.object_name}", model.__bases__, new_body)

    copied = [field for field in fields if not field.generated]
    targets = ", ".join(quote(field.column) for field in copied)
    sources = ", ".join(
        f"{LEGACY_FUNCTION}({quote(field.column)})" if field.column in money else quote(field.column)
        for field in copied
    )
    schema_editor.create_model(new_model)
    schema_editor.execute(
        f"INSERT INTO {quote(new_model._meta.db_table)} ({targets}) "  # noqa: S608  (identifiers from the model)
        f"SELECT {sources} FROM {quote(model._meta.db_table)}"
    )
    schema_editor.delete_model(model, handle_autom2m=False)
    schema_editor.alter_db_table(new_model, new_model._meta.db_table, model._meta.db_table)
    for sql in schema_editor.deferred_sql:
        schema_editor.execute(sql)
    schema_editor.deferred_sql = []
