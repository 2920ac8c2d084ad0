"""The suite's live server (tests/conftest.py `live_server`) on in-memory SQLite.

There the server's request threads share the test's one database connection (an in-memory
database lives only in its connection, so Django hands that connection to the server). Two
requests at once would interleave their transactions on it, and a request still running
when the test ends keeps a statement open on its tables while pytest-django flushes them:
"database table is locked". So, on in-memory SQLite only:

- the application runs one request at a time, the whole response included (its body and its
  close(), which sends request_finished), under `LOCK`;
- the server serves only while a test runs: each test's teardown shuts the gate under
  `LOCK`, which waits for a request already inside, before the flush; a request that comes
  later (a browser's poll) is answered 503 without touching the database. The gate is
  checked under the lock, so no request can slip in between the check and the flush.

The live server lives for the whole session, so this must be in place when it is built,
whichever test builds it first (an API test, a docs page test): it is the suite's own
`live_server` fixture, not a module's."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.servers.basehttp import ThreadedWSGIServer

LOCK = threading.Lock()
_serving = threading.Event()


class OneRequestAtATimeServer(ThreadedWSGIServer):
    """Connections stay threaded (keep-alive sockets never block each other); only the
    Django application runs one request at a time, and only while a test runs."""

    def set_app(self, application: Callable[..., Iterable[bytes]]) -> None:
        def serialized(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            with LOCK:
                if not _serving.is_set():
                    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                    return [b"no test is running"]
                response = application(environ, start_response)
                try:
                    return [b"".join(response)]
                finally:
                    close = getattr(response, "close", None)
                    if close is not None:
                        close()

        super().set_app(serialized)


@contextmanager
def serving() -> Iterator[None]:
    """Around one test: serve, then shut the gate and wait for the request being served."""
    _serving.set()
    try:
        yield
    finally:
        with LOCK:
            _serving.clear()


@contextmanager
def live_server_quiet() -> Iterator[None]:
    """The test's own database work while a browser may be requesting pages (on in-memory
    SQLite they share one connection)."""
    with LOCK:
        yield
