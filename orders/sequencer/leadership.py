"""One active engine per shard: whoever holds the shard's lock serves it; a standby waits
for the lock and takes over when the active engine dies (its database session ends and
PostgreSQL releases the lock at once; on SQLite the kernel releases a file lock).

PostgreSQL: a session advisory lock on a connection of its own, checked every half second.
SQLite (one host by nature): an exclusive flock on var/engine-<shard>.lock.

Fencing (PostgreSQL). The lock's session can end while its engine runs on (a network cut,
an idle connection dropped, pg_terminate_backend): PostgreSQL releases the lock at once, a
standby takes it within LEADERSHIP_POLL_SECONDS, while the engine before it notices at its
next check only, up to half a second later, and in between receives commands too (web workers
connect to every endpoint of the shard). Its books no longer hold what the new leader
writes (a maker filled twice, locks that no longer add up), so every batch it runs begins
with the leader check (`LeaderFence`, the function of migration orders 0005): the batches
of the shard share a second lock, and the session holding the shard's lock must be this
engine's, else the batch fails before writing anything (503, retried by the client). A new
leader takes that second lock alone once before it catches up: whatever the engine before
it had passed the check with has committed (or failed) by then, and is caught up.

A leader that stops serving without dying (its process frozen by SIGSTOP or a paused VM,
its loop hung on a lock) keeps its session and its lock. Its loop runs a statement on the
lock's session every half second (`held`), so a standby that cannot take the lock looks,
once a second, at how long that session has been idle; past ENGINE_LEADER_SILENT_SECONDS it ends
the sessions holding the shard's two locks (the leader's, and any batch of it in progress:
rolled back) and takes the lock on its next try (the server's measure is believed once the
standby saw the same last statement at a look before, and a session it saw unchanged for
that long by its own monotonic clock is silent whatever the server's clock says: a step of
the database host's clock neither ends a healthy leader nor hides a frozen one). The
leader, if it comes back, is fenced like
any leader whose session ended. Likewise a new leader waits at most that long for a batch the
engine before it left open (its session of the lock ended, the process then frozen in the
middle of a batch), then ends it.

"This engine's session still holds the shard's lock" is asked through a third lock: with
the shard's lock, the lock's session takes one of a key drawn at random when it leads
(`session_key`, known to this process only); both end with that session. A batch whose
shared try of that key succeeds finds nobody holding it: the session ended. Two lock calls
(~20 us of the server), where reading pg_locks (~110 us, and every lock partition held
meanwhile) was measured five times dearer per batch."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import connection

logger = logging.getLogger("orders.sequencer.leadership")


def _lock_key(shard: str) -> int:
    digest = hashlib.sha256(f"orders.sequencer:{shard}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _batches_key(shard: str) -> int:
    return _lock_key(f"{shard}:batches")


def lock_key_parts(shard: str) -> tuple[int, int]:
    """The shard's lock as pg_locks shows it (classid, objid: the key's high and low 32
    bits), for whoever looks for the leading session from outside (tests, operators)."""
    return _key_parts(_lock_key(shard))


# How often a standby that cannot take the lock looks at how long the leader has been silent.
SILENCE_CHECK_SECONDS = 1.0
# The sessions holding the shard's lock or its batches' lock (pg_locks shows a bigint key as
# its high and low halves, objsubid 1), with how long each has been in its present state; in
# this database only (advisory locks are per database: another platform's engines on the same
# server take the same keys, and are not ours to end).
_HOLDERS_SQL = """
SELECT l.pid, (l.classid, l.objid) = (%(high)s::oid, %(low)s::oid) AND l.mode = 'ExclusiveLock' AS leads,
       extract(epoch FROM clock_timestamp() - a.state_change)::float8 AS silent_s, a.state_change
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid, l.objid) = (%(high)s::oid, %(low)s::oid) OR (l.classid, l.objid) = (%(bhigh)s::oid, %(blow)s::oid))
"""


# The sessions holding the shard's batches' lock (a batch in progress), ended.
_BATCHES_END_SQL = """
SELECT l.pid, pg_terminate_backend(l.pid) FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (l.classid, l.objid) = (%(high)s::oid, %(low)s::oid)
"""


def _key_parts(key: int) -> tuple[int, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class LeaderFence:
    """The first statement of each batch transaction of a leading engine (PostgreSQL): fails
    with SQLSTATE 55000 once the session that took `session_key` with the shard's lock ended."""

    batches_key: int
    session_key: int

    SQL = "SELECT orders_engine_leader_check(%s::bigint, %s::bigint)"

    @property
    def params(self) -> list[int]:
        return [self.batches_key, self.session_key]


class Leadership:
    def __init__(self, shard: str) -> None:
        self.shard = shard
        self.key = _lock_key(shard)
        self._pg: psycopg.Connection[Any] | None = None
        self._file: IO[str] | None = None
        self._session_key: int | None = None
        self._silence_checked = 0.0
        # The leading session's last statement as the previous silence check saw it: its
        # pid -> (the server's state_change, when this process first saw that value).
        self._silence_seen: dict[int, tuple[Any, float]] = {}

    def acquire(self) -> bool:
        """Try once; True when this process now leads the shard."""
        if connection.vendor == "postgresql":
            try:
                if self._pg is None or self._pg.closed:
                    params = connection.get_connection_params()
                    params.pop("cursor_factory", None)
                    params.pop("context", None)
                    self._pg = psycopg.connect(**params, autocommit=True, connect_timeout=3)
                row = self._pg.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
                if not (row and row[0]):
                    self._silent_leader_end(self._pg)
                    return False
                self._session_key = self._session_key_taken(self._pg)
                self._batches_drain(self._pg)
                return True
            except psycopg.Error as exc:
                logger.warning("leadership: database unreachable: %s", exc)
                self.release()
                return False
        path = Path(settings.VAR_DIR) / f"engine-{self.shard}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115  (held for as long as this process leads)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def _batches_drain(self, session: psycopg.Connection[Any]) -> None:
        """The batches the engine before this one began under the lock (LeaderFence) commit
        or fail first; any later one fails the check. One still open after
        ENGINE_LEADER_SILENT_SECONDS (its engine frozen in the middle of it) is ended."""
        key = _batches_key(self.shard)
        limit = settings.ENGINE_LEADER_SILENT_SECONDS
        if limit > 0:
            session.execute("SELECT set_config('lock_timeout', %s, false)", [f"{round(limit * 1000)}ms"])
        try:
            try:
                session.execute("SELECT pg_advisory_lock(%s)", [key])
            except psycopg.errors.LockNotAvailable:
                high, low = _key_parts(key)
                ended = session.execute(_BATCHES_END_SQL, {"high": high, "low": low}).fetchall()
                logger.warning(
                    "engine %s: a batch of the engine before was open over %g s: its sessions %s ended",
                    self.shard,
                    limit,
                    sorted(pid for pid, _ in ended),
                )
                session.execute("SELECT set_config('lock_timeout', '0', false)")
                session.execute("SELECT pg_advisory_lock(%s)", [key])
            session.execute("SELECT pg_advisory_unlock(%s)", [key])
        finally:
            session.execute("SELECT set_config('lock_timeout', '0', false)")

    def _silent_leader_end(self, session: psycopg.Connection[Any]) -> None:
        """Once a second: when the leading session has been idle past
        ENGINE_LEADER_SILENT_SECONDS, end it and the shard's batches in progress (the
        module's docstring); the next try takes the lock."""
        limit = settings.ENGINE_LEADER_SILENT_SECONDS
        if limit <= 0 or time.monotonic() - self._silence_checked < SILENCE_CHECK_SECONDS:
            return
        now = self._silence_checked = time.monotonic()
        high, low = _key_parts(self.key)
        bhigh, blow = _key_parts(_batches_key(self.shard))
        holders = session.execute(_HOLDERS_SQL, {"high": high, "low": low, "bhigh": bhigh, "blow": blow}).fetchall()
        # The server's measure (its clock now, less when the session's last statement began)
        # is believed only once this process has seen that same last statement at a check
        # before: a database host's clock stepped forward past the limit (NTP, a VM resumed)
        # made every leader look silent at once, and a healthy one was ended (a failover for
        # nothing); a leader that keeps checking has run another statement by then. A session
        # seen unchanged for the limit by this process's monotonic clock is silent whatever
        # the server's clock says (stepped back, it hid a frozen leader for as long).
        seen, silent = self._silence_seen, []
        self._silence_seen = {}
        for pid, leads, seconds, changed in holders:
            if not leads or changed is None:
                continue
            before = seen.get(pid)
            again = before is not None and before[0] == changed
            first = before[1] if again and before is not None else now
            self._silence_seen[pid] = (changed, first)
            if now - first >= limit or (again and seconds is not None and seconds > limit):
                silent.append(max(now - first, seconds or 0.0))
        if not silent:
            return
        self._silence_seen = {}
        pids = sorted({pid for pid, _, _, _ in holders})
        logger.warning(
            "engine %s: the leader's session has been idle %.1f s (over %g s): the leader stopped serving; "
            "ending its sessions %s to take over",
            self.shard,
            silent[0],
            limit,
            pids,
        )
        session.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])

    @staticmethod
    def _session_key_taken(session: psycopg.Connection[Any]) -> int:
        """A key of this leadership's own, locked by its session (another process drawing
        the same 63 random bits is not to be expected; a key taken is drawn again)."""
        while True:
            key = secrets.randbits(63)
            row = session.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
            if row and row[0]:
                return key

    def fence(self) -> LeaderFence | None:
        """While leading on PostgreSQL: the check each batch begins with (None on SQLite,
        whose lock no other process can take while this one lives)."""
        if self._pg is None or self._pg.closed or self._session_key is None:
            return None
        return LeaderFence(batches_key=_batches_key(self.shard), session_key=self._session_key)

    def held(self) -> bool:
        """Still the leader? (the lock's session or file is still ours)"""
        if self._file is not None:
            return True
        if self._pg is None:
            return False
        try:
            self._pg.execute("SELECT 1")
            return True
        except psycopg.Error:
            self.release()
            return False

    def release(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(psycopg.Error):
                self._pg.close()
            self._pg = None
        self._session_key = None
        if self._file is not None:
            self._file.close()
            self._file = None
