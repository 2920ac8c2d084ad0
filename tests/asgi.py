"""An ASGI request's scope as a server hands it to the application, for tests that drive
the ASGI application (core.api.fast) directly."""

from __future__ import annotations

from typing import Any


def post_scope(*, path: str = "/api/orders", headers: dict[str, str], query: bytes = b"") -> dict[str, Any]:
    """A POST over HTTP/1.1 from 127.0.0.1 to testserver."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
