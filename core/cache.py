"""The cache (Redis in production) is an accelerator, never a point of failure.

Throttles, the failed-login counter, the delivery debounce and the failure-log cap keep
their state in the cache. When it is unreachable each of them degrades to something
safe and says so in the log, instead of failing the request or the task (a 500 on every
order while Redis restarts)."""

from __future__ import annotations

import base64
import logging
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache
from django.db import OperationalError, connections, router, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from core.errors import ApplicationError
from core.logging import LinesEvery

T = TypeVar("T")

logger = logging.getLogger("core.cache")

# What Django's Redis backend raises when the server is down or refuses.
CACHE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)

CACHE_FAILURE_LINES = LinesEvery(10.0)


def cache_failure_log(what: str, exc: BaseException) -> None:
    """One warning per `what` every 10 s: an outage must not flood the log."""
    if CACHE_FAILURE_LINES.due(what) is not None:
        logger.warning("cache unavailable (%s): %s: %s", what, type(exc).__name__, exc)


FORM_CLAIM_SECONDS = 24 * 3600


def form_once(key: str, *, resent: ApplicationError, act: Callable[[], T]) -> T:
    """`act` once per rendered form (`key` names the form: its user and its one-time id): a
    second post of it (a double click without JavaScript, a reload that resends it) raises
    `resent` and does nothing. The claim is the shared cache's add (atomic across web
    processes, kept a day); an act refused (an ApplicationError, the database unreachable)
    releases it, to be sent again once corrected."""
    if not cache.add(key, 1, timeout=FORM_CLAIM_SECONDS):
        raise resent
    try:
        return act()
    except (ApplicationError, OperationalError):
        cache.delete(key)
        raise


def _database_moments(vendor: str) -> tuple[str, str]:
    """SQL for the database's clock now, and now plus a parameter's seconds, to the second,
    as the cache table stores its expiry (timestamptz on PostgreSQL, UTC text on SQLite)."""
    if vendor == "postgresql":
        return "date_trunc('second', now())", "date_trunc('second', now()) + make_interval(secs => %s)"
    return (
        "strftime('%%Y-%%m-%%d %%H:%%M:%%S', 'now')",
        "strftime('%%Y-%%m-%%d %%H:%%M:%%S', 'now', '+' || %s || ' seconds')",
    )


class AtomicDatabaseCache(DatabaseCache):
    """The embedded default cache (no REDIS_URL): Django's database cache, shared by every
    process of the platform through its database, with the two operations counters rely
    on made atomic across processes. Django's own add() reads then writes (two processes
    can both "add" over an expired row) and incr() is get() + set() (two processes lose an
    increment): here add() is one INSERT ... ON CONFLICT DO UPDATE ... WHERE expired, and
    incr() updates the row under its lock (SELECT ... FOR UPDATE on PostgreSQL; SQLite
    transactions are IMMEDIATE, one writer at a time). The table is created by `migrate`
    (core.0001_cache_table runs `createcachetable`; docs/operations.md).

    Its entries are state, not copies: an API key's replay claim, a rate limit's window,
    the logins in progress, a form's one-time claim. Above MAX_ENTRIES Django's cull deleted
    a third of the table, live entries included, in key order (`:1:api-key-form...`,
    `:1:api-signature...` first): one trader posting order tickets (each a claim kept a
    day) filled it, and every add after that dropped the replay claims still inside their
    window, so a signed request captured a second earlier was accepted again. Here the cull
    deletes expired entries only, by the database's clock; the live ones are what the
    operations above wrote and are bounded by their own rates and timeouts. Expired
    entries are also deleted by the beat task core.tasks.expired_entries_delete, so the
    table holds about what is live (docs/operations.md, "Retention")."""

    def _now(self, connection: Any) -> Any:
        return connection.ops.adapt_datetimefield_value(timezone.now().replace(microsecond=0))

    def _cull(self, db: str, cursor: Any, now: Any, num: int) -> None:
        # Called by Django's set() and this add() when the table holds more than MAX_ENTRIES.
        self._expired_delete(connections[db], cursor)

    def _expired_delete(self, connection: Any, cursor: Any) -> int:
        table = connection.ops.quote_name(self._table)  # type: ignore[attr-defined]
        now_sql, _ = _database_moments(connection.vendor)
        # Parameters (none): the SQL's %% are read as the placeholders' escapes.
        cursor.execute(f"DELETE FROM {table} WHERE {connection.ops.quote_name('expires')} < {now_sql}", [])  # noqa: S608
        return int(cursor.rowcount)

    def expired_delete(self) -> int:
        """Deletes the entries past their expiry (by the database's clock): how many."""
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        with transaction.atomic(using=db), connection.cursor() as cursor:
            return self._expired_delete(connection, cursor)

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote = connection.ops.quote_name
        table = quote(self._table)  # type: ignore[attr-defined]
        backend_timeout = self.get_backend_timeout(timeout)
        # The row's expiry, and whether the row there has expired, by the database's clock,
        # one for every web host (relative to it: the timeout, whatever this host's clock
        # reads): a host whose clock ran ahead took over the entries other hosts had just
        # added (a signature claimed against replays, a lock), finding them expired by its own.
        now_sql, expires_sql = _database_moments(connection.vendor)
        seconds = None if backend_timeout is None else max(0, round(backend_timeout - time.time()))
        expires = datetime.max.replace(tzinfo=UTC, microsecond=0)
        encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
        columns = ", ".join(quote(name) for name in ("cache_key", "value", "expires"))
        expires_column = quote("expires")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 (a quoted table name)
            entries = cursor.fetchone()[0]
            if entries > self._max_entries:
                self._cull(db, cursor, None, entries)
            expiry, expiry_params = (
                ("%s", [connection.ops.adapt_datetimefield_value(expires)])
                if seconds is None
                else (expires_sql, [seconds])
            )
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES (%s, %s, {expiry}) "  # noqa: S608
                f"ON CONFLICT ({quote('cache_key')}) DO UPDATE SET {quote('value')} = excluded.{quote('value')}, "
                f"{expires_column} = excluded.{expires_column} WHERE {table}.{expires_column} < {now_sql} "
                f"RETURNING {quote('cache_key')}",
                [key, encoded, *expiry_params],
            )
            return cursor.fetchone() is not None

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote = connection.ops.quote_name
        table = quote(self._table)  # type: ignore[attr-defined]
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {quote('value')} FROM {table} WHERE {quote('cache_key')} = %s "  # noqa: S608
                f"AND {quote('expires')} >= %s{lock}",
                [key, self._now(connection)],
            )
            row = cursor.fetchone()
            if row is None:
                raise ValueError(f"Key '{key}' not found")
            value = pickle.loads(base64.b64decode(row[0].encode())) + delta  # noqa: S301 (our own rows)
            encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
            cursor.execute(
                f"UPDATE {table} SET {quote('value')} = %s WHERE {quote('cache_key')} = %s",  # noqa: S608
                [encoded, key],
            )
        return value
