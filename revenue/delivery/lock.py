"""One sender: only one delivery cycle at a time may read the chain's sequence and
allocate nonces, or two batches could claim the same sequence or nonce.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``), held across the
cycle's several short transactions and released when the cycle ends or its connection
dies. A busy lock means another sender is running: the cycle returns at once.

SQLite (embedded, one worker process): a process-local lock; across processes the
IMMEDIATE transaction mode serializes the batch writes and the unique live
(deployment, first_sequence) constraint refuses a second batch for the same sequence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
    acquired = _process_lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            _process_lock.release()


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
