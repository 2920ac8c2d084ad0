"""The engine's announcer thread (what follows a batch's commit: streams, metrics, the
post-trade task) keeps a database connection of its own. When the database ends that
session (pg_terminate_backend, a network cut, a server restart), the next announcement
connects again instead of failing on the dead connection for the life of the process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from orders.sequencer.server import announced

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_announcer_connects_again_after_the_database_ended_its_session():
    announcer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-announcer")
    seen: list[int] = []

    def backend_pid() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            seen.append(cursor.fetchone()[0])

    try:
        announcer.submit(announced, [backend_pid]).result()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [seen[0]])
        announcer.submit(announced, [backend_pid]).result()  # the dead session: logged, not raised
        announcer.submit(announced, [backend_pid]).result()
        announcer.submit(announced, [backend_pid]).result()
    finally:
        announcer.submit(lambda: connection.close()).result()
        announcer.shutdown()
    # At most the first announcement after the session ended fails (logged); the next ones
    # run on a new session.
    assert len(seen) >= 3, f"the announcer kept its dead connection: {seen}"
    assert seen[-1] != seen[0] and seen[-1] == seen[-2]
