"""Multi-row writes that the hot paths issue once per transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model


def rows_update(*, objects: Sequence[Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of every object (all of one model) in one statement.

    PostgreSQL: ``UPDATE ... FROM unnest(<one typed array per column>)``. Django's
    ``bulk_update`` builds a ``CASE WHEN id = ...`` expression per field and row, which
    cost more CPU to compile than the statement costs to run (docs/performance.md).
    Other backends use ``bulk_update``.
    """
    if not objects:
        return
    model = type(objects[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objects, list(fields))
        return
    meta = model._meta
    columns: list[Field[Any, Any]] = [cast("Field[Any, Any]", meta.pk)]
    columns += [cast("Field[Any, Any]", meta.get_field(name)) for name in fields]
    quote = connection.ops.quote_name
    arrays = [
        [column.get_db_prep_save(getattr(obj, column.attname), connection) for obj in objects] for column in columns
    ]
    unnest = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    names = [quote(str(column.column)) for column in columns]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "  # noqa: S608  (identifiers from the model)
        f"FROM unnest({unnest}) AS v({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
