"""One active engine per shard: whoever holds the shard's lock serves it; a standby waits
for the lock and takes over when the active engine dies (its database session ends and
PostgreSQL releases the lock at once; on SQLite the kernel releases a file lock).

PostgreSQL: a session advisory lock on a connection of its own, checked every second.
SQLite (one host by nature): an exclusive flock on var/engine-<shard>.lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
from pathlib import Path
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import connection

logger = logging.getLogger("orders.sequencer.leadership")


def _lock_key(shard: str) -> int:
    digest = hashlib.sha256(f"orders.sequencer:{shard}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    def __init__(self, shard: str) -> None:
        self.shard = shard
        self.key = _lock_key(shard)
        self._pg: psycopg.Connection[Any] | None = None
        self._file: IO[str] | None = None

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
                return bool(row and row[0])
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
        if self._file is not None:
            self._file.close()
            self._file = None
