"""The batch writer's statements: rows given as tuples of plain values (int, Decimal, str,
bool, aware datetime, None), in the order of the fields named, without model instances
or Django's per-value field preparation (a third of a batch's CPU, docs/performance.md).

PostgreSQL: one `INSERT ... SELECT FROM unnest(<typed arrays>)` or `UPDATE ... FROM
unnest(...)` per table, each array sent as one array literal (psycopg quotes one string
per column instead of adapting every value). Other backends (SQLite): model instances
and Django's bulk operations (core.db), as before."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from types import TracebackType
from typing import Any, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.models import Field, Model
from django.db.transaction import TransactionManagementError
from psycopg.pq import TransactionStatus

from core.db import rows_insert, rows_update

Row = tuple[Any, ...]
logger = logging.getLogger(__name__)


def _text(value: object) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Most moments of a batch are one object (the batch's `now`): its text is kept, with the
# object itself so that the identity check cannot match a new object at the same address.
_last_moment: tuple[datetime | None, str] = (None, "")


def _moment(value: datetime) -> str:
    global _last_moment
    last = _last_moment  # one read and one rebinding: safe between threads
    if value is last[0]:
        return last[1]
    if value.tzinfo is None:
        raise ValueError("naive datetime written by the batch writer")
    text = f'"{value.isoformat()}"'
    _last_moment = (value, text)
    return text


# By exact type (a dictionary look-up per value instead of a chain of isinstance checks:
# the writer formats some 300 values per command).
_FORMATS: dict[type, Callable[[Any], str]] = {
    type(None): lambda value: "NULL",
    bool: lambda value: "t" if value else "f",
    int: str,
    Decimal: str,  # PostgreSQL reads numeric in exponent form too (1E+3, 0E-8): no formatting per value
    datetime: _moment,
    str: _text,
}


def _formatter(kind: type) -> Callable[[Any], str]:
    formatter = _FORMATS.get(kind)
    if formatter is None:
        if issubclass(kind, Enum):  # the vocabulary's members (side, status, ...): each one's text made once
            formatter = {member: _element(member.value) for member in kind}.__getitem__
        else:  # a subclass (a datetime subclass, ...): its nearest known base
            formatter = next((_FORMATS[base] for base in kind.__mro__ if base in _FORMATS), _text)
        _FORMATS[kind] = formatter
    return formatter


def _element(value: object) -> str:
    return _formatter(type(value))(value)


_NONE = type(None)


def array_literal(values: Sequence[object]) -> str:
    """A PostgreSQL array literal of `values` (text quoted and escaped, NULL for None).

    A column's values are of one type (and None): its formatter is looked up once for the
    column rather than once per value (the writer formats ~50 values per command)."""
    kinds = set(map(type, values))
    nullable = _NONE in kinds
    kinds.discard(_NONE)
    if len(kinds) == 1:
        formatter = _formatter(kinds.pop())
        if not nullable:
            return "{" + ",".join(map(formatter, values)) + "}"
        return "{" + ",".join(["NULL" if value is None else formatter(value) for value in values]) + "}"
    return "{" + ",".join(map(_element, values)) + "}"


@cache
def _shape(model: type[Model], fields: tuple[str, ...]) -> tuple[list[str], list[str], list[str], str]:
    """Attribute names, quoted columns, array casts and the quoted primary key."""
    meta = model._meta
    chosen = [cast("Field[Any, Any]", meta.get_field(name)) for name in fields]
    quote = connection.ops.quote_name
    return (
        [str(field.attname) for field in chosen],
        [quote(str(field.column)) for field in chosen],
        [f"%s::{field.db_type(connection)}[]" for field in chosen],
        quote(str(cast("Field[Any, Any]", meta.pk).column)),
    )


def _columns(rows: Sequence[Row], width: int) -> list[str]:
    return [array_literal(column) for column in zip(*rows, strict=True)] if rows else [array_literal([])] * width


def table_insert(
    model: type[Model],
    *,
    fields: Sequence[str],
    rows: Sequence[Row],
    ids: Sequence[int] | None = None,
    returning: bool = True,
    conflicts_ignored: bool = False,
) -> list[int]:
    """Insert `rows` (values in the order of `fields`) in one statement; their new ids, in
    order. `ids` (PostgreSQL, from ids_reserve): the rows' primary keys, given rather than
    returned; `returning=False`: the ids are not wanted ([]). Either way the statement
    needs no answer, so it can wait in a pipeline (statements_pipelined).
    `conflicts_ignored` (with `returning=False`): a row that would break a unique
    constraint is skipped, as bulk_create(ignore_conflicts=True) skips it."""
    if conflicts_ignored and (returning or ids is not None):
        raise ValueError("an insert ignoring conflicts neither gives nor returns ids (returning=False)")
    if not rows:
        return []
    names = tuple(fields)
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` looks the thread's connection up again
    if db.vendor != "postgresql":
        attnames = _shape(model, names)[0]
        objects = [model(**dict(zip(attnames, row, strict=True))) for row in rows]
        if conflicts_ignored:
            model._default_manager.bulk_create(objects, ignore_conflicts=True)
            return []
        return rows_insert(objects=objects, fields=names)
    mode = "ids" if ids is not None else "conflicts_ignored" if conflicts_ignored else "returning" if returning else ""
    sql = _insert_sql(model, names, mode)
    columns = _columns(rows, len(names))
    with db.cursor() as cursor:
        if ids is not None:
            cursor.execute(sql, [array_literal(ids), *columns])
            return list(ids)
        cursor.execute(sql, columns)
        return [int(row[0]) for row in cursor.fetchall()] if returning else []


@cache
def _insert_sql(model: type[Model], fields: tuple[str, ...], mode: str) -> str:
    """PostgreSQL: table_insert's statement. `mode`: "ids" (the primary keys given first),
    "returning" (the new ids returned in the rows' order), "conflicts_ignored" or ""."""
    _, columns, casts, pk = _shape(model, fields)
    table = connection.ops.quote_name(model._meta.db_table)
    if mode == "ids":
        pk_cast = f"%s::{cast('Field[Any, Any]', model._meta.pk).db_type(connection)}[]"
        return (
            f"INSERT INTO {table} ({pk}, {', '.join(columns)}) "  # noqa: S608
            f"SELECT * FROM unnest({pk_cast}, {', '.join(casts)})"
        )
    if mode != "returning":
        conflicts = " ON CONFLICT DO NOTHING" if mode == "conflicts_ignored" else ""
        return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({', '.join(casts)}){conflicts}"  # noqa: S608
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(f'v.{c}' for c in columns)} FROM unnest({', '.join(casts)}) WITH ORDINALITY "
        f"AS v({', '.join(columns)}, ordinality) ORDER BY v.ordinality RETURNING {pk}"
    )


def ids_reserve(counts: Sequence[tuple[type[Model], int]]) -> Callable[[], list[list[int]]]:
    """PostgreSQL: new primary keys from the sequences of these models, `count` each, in
    one statement (none when every count is 0). It is sent at once and read when the
    returned function is called (in pipeline mode, with whatever else was queued
    meanwhile); each list ascends, so rows inserted with them keep their order by id."""
    wanted = [(model, count) for model, count in counts if count > 0]
    if not wanted:
        return lambda: [[] for _ in counts]
    # The sequence is looked up once per statement (the subquery kept apart by OFFSET 0):
    # pg_get_serial_sequence called for every value searched the catalogs each time and
    # made this statement some 6 times slower (2,500 values: 15-17 ms against 2.3-2.8 ms).
    # The ids drawn are nearly always consecutive (one engine drawing at a time): then only
    # the first and the last come back, and the list is built from their range (reading a
    # few hundred ids per batch back was 1.7% of the sequencer thread). Else every id.
    parts = [
        "(SELECT CASE WHEN max(id) - min(id) + 1 = count(*) THEN ARRAY[min(id), max(id)] "
        "ELSE array_agg(id ORDER BY id) END FROM (SELECT nextval(sequence) AS id FROM "
        "(SELECT pg_get_serial_sequence(%s, %s)::regclass AS sequence OFFSET 0) AS found, generate_series(1, %s)) "
        "AS drawn)"
    ] * len(wanted)
    params: list[str | int] = []
    for model, count in wanted:
        # Unquoted (Django's table names are lower case): the statement only draws from sequences.
        params += [model._meta.db_table, str(cast("Field[Any, Any]", model._meta.pk).column), count]
    cursor = connections[DEFAULT_DB_ALIAS].cursor()
    cursor.execute(f"SELECT {', '.join(parts)}", params)

    def read() -> list[list[int]]:
        try:
            row = iter(cursor.fetchone() or ())
        finally:
            cursor.close()
        return [_ids(next(row), count) if count > 0 else [] for _, count in counts]

    return read


def _ids(drawn: list[int] | None, count: int) -> list[int]:
    """`count` ids from ids_reserve's column: all of them, ascending, or their first and last."""
    if drawn is not None and len(drawn) == count:  # every id (two consecutive ones are their own range)
        return [int(value) for value in drawn]
    if drawn is None or len(drawn) != 2 or drawn[1] - drawn[0] + 1 != count:
        raise ValueError(f"ids_reserve drew {drawn!r} for {count} ids")
    return list(range(int(drawn[0]), int(drawn[1]) + 1))


# The batch's statements find their rows by key (ids, wallet keys, order ids). Prepared
# (ENGINE_PREPARED_STATEMENTS), each is planned once for the connection's life: PostgreSQL
# keeps a generic plan, and nothing replans it until an ANALYZE of its tables. On a young
# database that plan was made while the tables held a few rows, where reading all of them
# costs least, and kept while they grew: under the bench's API load the makers' update and
# a cancel's stored fills and events read every row, from 0.26 ms to 1.7-2.5 ms each within
# 40 s (docs/performance.md, "Plans made on empty tables"). Within a batch's transaction the
# planner takes an index wherever there is one, whatever the tables' size when it plans.
# And it keeps that generic plan: by default PostgreSQL plans some statements again at
# every execution, those whose generic plan it estimates dearer than one made for the
# values at hand (the new ids' draw, the market's update: 70-125 us each per batch).
# JIT off: with seq scans off a plan that has no other way costs 10^10, far past
# `jit_above_cost`, and would be compiled at each execution (35-130 ms here): in the batch,
# or after it where the batch runs inside an enclosing transaction (the settings last to
# its end: a test's, where the stateful API test spent most of its time so).
PLANS_BY_KEY = (
    "SELECT set_config('enable_seqscan', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true),"
    " set_config('jit', 'off', true)"
)


def _queued_unflushed(pipeline: Any) -> Callable[[], Iterator[Any]]:
    """psycopg's per-statement step of a pipeline (`_communicate_gen`) replaced by one that
    only hands the statement to libpq: libpq keeps it in its buffer (in pipeline mode it
    writes only past 64 kB) until psycopg writes the buffer out, when the block's results
    are read (a read inside it asks for them with a flush; its end sends Sync). psycopg's
    private pipeline API (psycopg is pinned in pyproject.toml): if it changes,
    test_an_unflushed_block_writes_its_statements_when_its_results_are_read fails."""
    queue = pipeline.command_queue

    def communicate() -> Iterator[Any]:
        while queue:
            queue.popleft()()
        yield from ()

    return communicate


@contextmanager
def statements_pipelined(*, unflushed: bool = False) -> Iterator[None]:
    """PostgreSQL: the statements of the block are sent without waiting for each one's
    answer (psycopg's pipeline mode): they cost one round trip to the server together, and
    one more for each read of a result in between. Errors surface as Django's database
    errors, at the latest when the block ends. Other backends: as without it.

    psycopg writes each statement to the socket as it is executed, so that the server
    starts on it while the next is built. Each write wakes the server's process: ~30 us of
    the sequencer thread's CPU per statement here (docs/performance.md). `unflushed`: the
    block's statements (and those of a block nested in it) are all written at once, when
    its results are first read; for statements as quick to build as a batch's reads, the
    server loses nothing by waiting."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        yield
        return
    db.ensure_connection()
    raw = db.connection
    # Parameters bound by the server (sent beside the statement, as in psycopg's default
    # cursor) rather than quoted into its text by psycopg (Django's default): the batch's
    # parameters are a few long array literals, which client-side binding escaped and
    # copied again at every batch. Their texts do not depend on the batch's size, so
    # (ENGINE_PREPARED_STATEMENTS) psycopg prepares each one the second time it is sent on
    # this connection and executes it by name from then on; statements outside the block
    # (Django's client-side cursors) are never prepared. Not while Django logs the queries
    # (DEBUG, a test capturing them): psycopg keeps no text of a statement executed by
    # name, and the log would hold None instead of the statement.
    factory, raw.cursor_factory = raw.cursor_factory, ServerBindingCursor
    threshold = raw.prepare_threshold
    if settings.ENGINE_PREPARED_STATEMENTS and not db.queries_logged:
        raw.prepare_threshold = 1
    try:
        with db.wrap_database_errors, raw.pipeline() as pipeline:
            mine = unflushed and "_communicate_gen" not in vars(pipeline)  # the outermost unflushed block's
            if mine:
                pipeline._communicate_gen = _queued_unflushed(pipeline)
            try:
                if not raw.autocommit:  # in atomic(): psycopg's BEGIN, then this (BatchTransaction sends its own)
                    raw.cursor().execute(PLANS_BY_KEY, prepare=False)
                yield
            finally:
                if mine:
                    del pipeline._communicate_gen
    finally:
        raw.cursor_factory, raw.prepare_threshold = factory, threshold


class BatchTransaction(AbstractContextManager["BatchTransaction"]):
    """PostgreSQL: a batch's transaction whose BEGIN travels with its first statement.

    In a transaction psycopg sends BEGIN before the first statement and waits for its
    answer, pipeline or not (it must see the transaction open before the next statement):
    a round trip of its own per batch. Here the connection stays in autocommit, for
    psycopg and for Django, and BEGIN is queued just before the block's first statement
    (in its pipeline, when it is sent in one): one round trip fewer. COMMIT is the block's
    own (orders.sequencer.writer.commit_sent, queued behind the writes). On leaving, the
    transaction is over: committed, and then what `on_commit` was given runs (each in
    turn; one that fails is logged, as Django's robust hooks are); or rolled back, if the
    block raised or ended without its COMMIT. Nothing in the block may open Django's
    atomic() (it would switch psycopg out of autocommit inside the transaction), nor
    register Django's on_commit hooks (they would run at once): the batch path uses
    neither. `leader_check`: a statement (and its parameters) queued right after BEGIN, that
    fails the transaction when the engine no longer leads (orders.sequencer.leadership)."""

    def __init__(self, *, leader_check: tuple[str, Sequence[object]] | None = None) -> None:
        self.hooks: list[Callable[[], object]] = []
        self._begun = False
        self._first: AbstractContextManager[None] | None = None
        self._leader_check = leader_check

    def __enter__(self) -> BatchTransaction:
        db = connections[DEFAULT_DB_ALIAS]
        if db.vendor != "postgresql":
            raise TransactionManagementError("BatchTransaction is PostgreSQL's")
        if db.in_atomic_block or not db.get_autocommit():
            raise TransactionManagementError("a batch's transaction is the outermost (as atomic(durable=True))")
        db.close_if_health_check_failed()  # as atomic() does: a dead connection replaced first
        db.ensure_connection()
        raw = db.connection
        status = raw.pgconn.transaction_status
        if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):  # left open by a failure
            logger.warning("a transaction left open on the batch's connection rolled back")
            _rolled_back()
        elif status != TransactionStatus.IDLE:
            raise TransactionManagementError(f"the connection is busy ({status.name})")
        self._first = db.execute_wrapper(self._begin)
        self._first.__enter__()
        return self

    def _begin(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not self._begun:
            self._begun = True
            # On the statement's own psycopg cursor: in its pipeline, if it is sent in one.
            cursor = context["cursor"].cursor
            cursor.execute("BEGIN", prepare=False)
            cursor.execute(PLANS_BY_KEY, prepare=False)
            if self._leader_check is not None:
                cursor.execute(*self._leader_check)
        return execute(sql, params, many, context)

    def on_commit(self, work: Callable[[], object]) -> None:
        """Run `work` once the transaction has committed (never if it did not)."""
        self.hooks.append(work)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._first is not None:
            self._first.__exit__(None, None, None)
            self._first = None
        if not self._begun:  # nothing was sent: nothing to end
            self._hooks_run(committed=kind is None)
            return
        raw = connection.connection
        if raw is None:  # closed: the server rolled back whatever was open
            return
        if kind is None and raw.pgconn.transaction_status == TransactionStatus.IDLE:
            self._hooks_run(committed=True)
            return
        self.hooks = []
        _rolled_back()
        if kind is None:  # left open without its COMMIT: a bug of the caller, rolled back rather than kept
            raise DatabaseError("a batch's transaction ended without its COMMIT; rolled back")

    def _hooks_run(self, *, committed: bool) -> None:
        hooks, self.hooks = self.hooks, []
        if not committed:
            return
        for work in hooks:
            try:
                work()
            except Exception:
                logger.exception("a batch's on_commit work failed")


def _rolled_back() -> None:
    """ROLLBACK, if a transaction is open. A connection that cannot send it is dropped, as
    atomic() drops it (the next statement connects again), and the error raised."""
    try:
        with connection.wrap_database_errors:
            if connection.connection.pgconn.transaction_status != TransactionStatus.IDLE:
                connection.connection.execute("ROLLBACK", prepare=False)
    except DatabaseError:
        connection.close()
        raise


def table_update(model: type[Model], *, fields: Sequence[str], rows: Sequence[Row]) -> None:
    """Write `fields` of the rows whose primary key is each row's first value, in one statement."""
    if not rows:
        return
    names = tuple(fields)
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        attnames = _shape(model, names)[0]
        pk_name = str(cast("Field[Any, Any]", model._meta.pk).attname)
        objects = [model(**{pk_name: row[0], **dict(zip(attnames, row[1:], strict=True))}) for row in rows]
        rows_update(objects=objects, fields=names)
        return
    with db.cursor() as cursor:
        cursor.execute(_update_sql(model, names), _columns(rows, len(names) + 1))


@cache
def _update_sql(model: type[Model], fields: tuple[str, ...]) -> str:
    """PostgreSQL: table_update's statement."""
    _, columns, casts, pk = _shape(model, fields)
    pk_cast = f"%s::{cast('Field[Any, Any]', model._meta.pk).db_type(connection)}[]"
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    return (
        f"UPDATE {connection.ops.quote_name(model._meta.db_table)} AS t SET {assignments} "  # noqa: S608
        f"FROM unnest({pk_cast}, {', '.join(casts)}) AS v({pk}, {', '.join(columns)}) WHERE t.{pk} = v.{pk}"
    )
