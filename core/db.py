"""Statements the hot paths issue on every order, written out instead of compiled by the
ORM: compiling them cost more CPU than the database spends running them
(docs/performance.md). Rows still come back as model instances."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model, QuerySet, Sum

from core.money import ZERO, exact_arithmetic

M = TypeVar("M", bound=Model)


def table_count(*, model: type[Model], exact_below: int) -> tuple[int, bool]:
    """Every row of ``model``'s table: (how many, estimated). Counted exactly below
    ``exact_below`` (a count that stops there: it reads at most that many rows) and on a
    database other than PostgreSQL; from there on PostgreSQL's estimate of the table's rows
    (pg_class.reltuples, kept by ANALYZE and autovacuum), unless it says fewer (statistics not
    yet up to date): then counted."""
    rows = model._default_manager.order_by()
    if connection.vendor != "postgresql":
        return rows.count(), False
    bounded = rows.values("pk")[:exact_below].count()
    if bounded < exact_below:
        return bounded, False
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    estimate = int(row[0]) if row is not None else -1
    if estimate < exact_below:
        return rows.count(), False
    return estimate, True


def quote_name(name: str) -> str:
    return connection.ops.quote_name(name)


def select_plans(work: Callable[[], object], *, explain: str = "EXPLAIN", table: str | None = None) -> list[str]:
    """Each SELECT `work` runs (on `table` only, if given) followed by its plan as
    `explain` (e.g. "EXPLAIN (ANALYZE, BUFFERS)") prints it: for the benchmark's report
    and the tests that hold the planner to an index (PostgreSQL)."""
    statements: list[tuple[str, Any]] = []

    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        work()
    plans = []
    with connection.cursor() as cursor:
        for sql, params in statements:
            if not sql.lstrip().upper().startswith("SELECT") or (table is not None and table not in sql):
                continue
            cursor.execute(f"{explain} {sql}", params)
            plans.append(f"-- {sql}\n" + "\n".join(row[0] for row in cursor.fetchall()))
    return plans


def rows_select(
    model: type[M],
    *,
    where: str,
    params: Sequence[object] = (),
    fields: Sequence[str] | None = None,
    order_by: str = "",
    limit: int | None = None,
    for_update: bool = False,
    nowait: bool = False,
) -> list[M]:
    """Instances of `model` whose rows match `where` (SQL with %s placeholders and names
    quoted by the caller), with every concrete column or only `fields` (the others are
    deferred, as with `.only()`). `for_update` locks them (ignored by SQLite, which locks
    the database on the first write); with `nowait`, a row locked by another transaction
    fails the statement at once (PostgreSQL's lock_not_available) instead of waiting."""
    meta = model._meta
    chosen = meta.concrete_fields if fields is None else [meta.get_field(name) for name in fields]
    columns = ", ".join(quote_name(str(cast("Field[Any, Any]", field).column)) for field in chosen)
    sql = f"SELECT {columns} FROM {quote_name(meta.db_table)} WHERE {where}"  # noqa: S608  (identifiers from the model)
    arguments = list(params)
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += " LIMIT %s"
        arguments.append(limit)
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE NOWAIT" if nowait else " FOR UPDATE"
    return list(model._default_manager.raw(sql, arguments))


def rows_update(*, objects: Sequence[Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of every object (all of one model) in one statement.

    PostgreSQL: ``UPDATE ... FROM unnest(<one typed array per column>)``. Django's
    ``bulk_update`` builds a ``CASE WHEN id = ...`` expression per field and row, which
    cost more CPU to compile than the statement costs to run (docs/performance.md), and
    more than linearly: 1,200 rows took seconds (a cancel-all on SQLite answered 503).
    Other backends (SQLite, in process: no round trips to save): one parameterised
    ``UPDATE ... WHERE id = %s`` run for every row by ``executemany``.
    """
    if not objects:
        return
    model = type(objects[0])
    meta = model._meta
    if connection.vendor != "postgresql":
        chosen = [cast("Field[Any, Any]", meta.get_field(name)) for name in fields]
        pk = cast("Field[Any, Any]", meta.pk)
        assignments = ", ".join(f"{quote_name(str(field.column))} = %s" for field in chosen)
        sql = f"UPDATE {quote_name(meta.db_table)} SET {assignments} WHERE {quote_name(str(pk.column))} = %s"  # noqa: S608
        rows = [
            [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in chosen]
            + [pk.get_db_prep_save(obj.pk, connection)]
            for obj in objects
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        return
    columns: list[Field[Any, Any]] = [cast("Field[Any, Any]", meta.pk)]
    columns += [cast("Field[Any, Any]", meta.get_field(name)) for name in fields]
    quote = connection.ops.quote_name
    arrays = _column_arrays(objects, columns)
    unnest = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    names = [quote(str(column.column)) for column in columns]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "  # noqa: S608  (identifiers from the model)
        f"FROM unnest({unnest}) AS v({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)


def money_sums(
    queryset: QuerySet[Any], *, group_by: str | tuple[str, ...], fields: Sequence[str]
) -> dict[Any, tuple[Decimal, ...]]:
    """Per value of `group_by` (a field, or a tuple of fields: then keyed by the tuple of
    their values), the exact sums of the money `fields` of `queryset`.

    PostgreSQL sums NUMERIC exactly in SQL; SQLite would sum in floating point (its SUM
    turns the text columns into REALs), so there the rows are summed here, in Decimal."""
    keys = (group_by,) if isinstance(group_by, str) else group_by

    def key_of(values: Sequence[Any]) -> Any:
        return values[0] if isinstance(group_by, str) else tuple(values)

    if connection.vendor == "postgresql":
        rows = queryset.values(*keys).annotate(**{f"sum_{name}": Sum(name) for name in fields})
        return {
            key_of([row[key] for key in keys]): tuple(row[f"sum_{name}"] or ZERO for name in fields) for row in rows
        }
    totals: dict[Any, list[Decimal]] = {}
    with exact_arithmetic():
        for row in queryset.values_list(*keys, *fields):
            sums = totals.setdefault(key_of(row[: len(keys)]), [ZERO] * len(fields))
            for index, value in enumerate(row[len(keys) :]):
                sums[index] += value
    return {key: tuple(sums) for key, sums in totals.items()}


def money_totals(queryset: QuerySet[Any], *, fields: Sequence[str]) -> tuple[Decimal, ...]:
    """The exact sums of the money `fields` (columns or annotations) over `queryset`, as
    money_sums without a grouping: in SQL on PostgreSQL, in Decimal on SQLite."""
    if connection.vendor == "postgresql":
        row = queryset.aggregate(**{f"sum_{name}": Sum(name) for name in fields})
        return tuple(row[f"sum_{name}"] or ZERO for name in fields)
    sums = [ZERO] * len(fields)
    with exact_arithmetic():
        for values in queryset.values_list(*fields):
            for index, value in enumerate(values):
                sums[index] += value
    return tuple(sums)


def rows_insert(*, objects: Sequence[M], fields: Sequence[str]) -> list[int]:
    """INSERT every object (all of one model) in one statement; returns their new ids, in
    order, and sets them on the objects.

    PostgreSQL: ``INSERT ... SELECT * FROM unnest(<one typed array per column>) WITH
    ORDINALITY ORDER BY ordinality RETURNING id``: a batch's orders, trades, events and
    outbox rows without the ORM's compilation of a VALUES list per row (half of a batch's
    time, docs/performance.md). Other backends use ``bulk_create``."""
    if not objects:
        return []
    model = type(objects[0])
    if connection.vendor != "postgresql":
        created = model._default_manager.bulk_create(list(objects))
        return [int(obj.pk) for obj in created]
    meta = model._meta
    columns: list[Field[Any, Any]] = [cast("Field[Any, Any]", meta.get_field(name)) for name in fields]
    quote = connection.ops.quote_name
    arrays = _column_arrays(objects, columns)
    names = [quote(str(column.column)) for column in columns]
    unnest = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    pk = quote(str(cast("Field[Any, Any]", meta.pk).column))
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(names)}) "  # noqa: S608  (identifiers from the model)
        f"SELECT {', '.join(f'v.{name}' for name in names)} FROM unnest({unnest}) WITH ORDINALITY "
        f"AS v({', '.join(names)}, ordinality) ORDER BY v.ordinality RETURNING {pk}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        ids = [int(row[0]) for row in cursor.fetchall()]
    for obj, new_id in zip(objects, ids, strict=True):
        obj.pk = new_id
    return ids


def _column_arrays(objects: Sequence[Model], columns: Sequence[Field[Any, Any]]) -> list[list[Any]]:
    """One array of database values per column. The thread's connection is resolved once:
    through Django's proxy it is a context-local lookup per value."""
    current = connections[DEFAULT_DB_ALIAS]
    return [[column.get_db_prep_save(getattr(obj, column.attname), current) for obj in objects] for column in columns]


def id_sequence_advance(*, model: type[Model], past: int) -> bool:
    """Makes every id the database gives ``model``'s rows from now on greater than ``past``
    (never lower than it would have been: a sequence only moves forward). Whether it moved.
    For ids that are also names outside the database (a revenue event's id is its item id on
    chain): a database restored from a backup would give the ids of rows it lost again."""
    table, column = model._meta.db_table, str(model._meta.pk.column)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, column])
            sequence = cursor.fetchone()[0]  # quoted by PostgreSQL
            cursor.execute(
                f"SELECT setval(%s::regclass, %s) FROM {sequence} "  # noqa: S608
                "WHERE (CASE WHEN is_called THEN last_value ELSE last_value - 1 END) < %s",
                [sequence, past, past],
            )
            return cursor.fetchone() is not None
        # SQLite: AUTOINCREMENT's counter; the next id is past both it and the largest id.
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
        row = cursor.fetchone()
        cursor.execute(f"SELECT MAX({quote_name(column)}) FROM {quote_name(table)}")  # noqa: S608
        largest = cursor.fetchone()[0] or 0
        if max(row[0] if row else 0, largest) >= past:
            return False
        if row is None:
            cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, past])
        else:
            cursor.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s", [past, table])
        return True
