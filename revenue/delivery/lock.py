"""One sender: only one delivery cycle at a time may read the chain's sequence and
allocate nonces, or two batches could claim the same sequence or nonce.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``), held across the
cycle's several short transactions and released when the cycle ends or its connection
dies. A busy lock means another sender is running: the cycle returns at once.

SQLite: a lock on a file beside the database file (``flock`` on ``<database>.delivery-lock``),
taken after a process-local lock (flock is per open file, not per thread): it holds
across processes (the worker, a ``chain_deploy`` or a staff retry run from another one)
and the kernel releases it when its process dies. Before, only the process-local lock held
on SQLite, and nothing kept another process's cycle or redeploy out of a running one.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

logger = logging.getLogger("revenue.delivery")

ADVISORY_LOCK_KEY = 0x5245564445_4C4956  # "REVDELIV": any fixed bigint, unique to this lock
_process_lock = threading.Lock()


@contextmanager
def delivery_sender_lock() -> Iterator[bool]:
    """Yields whether this process is now the sender; never waits."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
            row = cursor.fetchone()
        acquired = bool(row and row[0])
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
                except Exception:  # a broken connection already released the session lock
                    logger.warning("could not release the delivery lock", exc_info=True)
        return
    if not _process_lock.acquire(blocking=False):
        yield False
        return
    try:
        path = delivery_lock_path()
        if path is None:
            yield True
        else:
            with file_lock(path) as acquired:
                yield acquired
    finally:
        _process_lock.release()


def delivery_lock_path() -> Path | None:
    """The lock file of the SQLite database: beside it. None for a database in memory, which
    no other process can reach (the tests')."""
    name = str(connection.settings_dict["NAME"] or "")
    if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return None
    database = Path(name)
    return database.with_name(database.name + ".delivery-lock")


@contextmanager
def file_lock(path: Path) -> Iterator[bool]:
    """The cross-process half of the SQLite lock: an exclusive ``flock`` on `path`, held by
    one open file of one process at a time, released when it is closed or its process dies.
    Yields whether it is now held; never waits."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def delivery_sender_lock_within(seconds: float) -> Iterator[bool]:
    """The delivery lock, tried again for up to ``seconds`` while a cycle holds it (cycles
    are short); yields whether this process is now the sender."""
    deadline = time.monotonic() + seconds
    while True:
        with delivery_sender_lock() as acquired:
            if acquired or time.monotonic() >= deadline:
                yield acquired
                return
        time.sleep(0.25)
