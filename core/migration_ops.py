"""What migrations of several apps do alike: written once, taking the migration's own
literals (a migration must not change with the code it was written against)."""

from __future__ import annotations

from typing import Any


def numeric_columns_retype(schema_editor: Any, *, table: str, columns: tuple[str, ...], digits: int) -> None:
    """Migrations: `columns` of `table` made NUMERIC(digits, 8) in place on PostgreSQL (more
    or less precision, the same scale: no rewrite of the table); nothing on SQLite, where a
    money column is text (core.fields) and holds any width, and Django's AlterField would
    remake the table. The widths are the migration's own literals, never core.fields'."""
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in columns:
        schema_editor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE numeric({digits}, 8)')
