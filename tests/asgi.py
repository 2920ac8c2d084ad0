"""An ASGI request's scope as a server hands it to the application, and its answer, for tests that drive
the ASGI application (core.api.fast) directly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asgiref.sync import async_to_sync


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


class Answer:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        start = messages[0]
        assert start["type"] == "http.response.start", messages
        self.status: int = start["status"]
        self.headers = [(name.decode(), value.decode()) for name, value in start["headers"]]
        self.body = b"".join(m.get("body", b"") for m in messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return {key.lower(): value for key, value in self.headers}.get(name.lower())


def call(
    app: Any, *, body: bytes = b"", headers: dict[str, str], path: str = "/api/orders", query: bytes = b""
) -> Answer:
    scope = post_scope(path=path, headers=headers, query=query)

    async def run() -> list[dict[str, Any]]:
        inbox = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if inbox:
                return inbox.pop()
            await asyncio.sleep(3600)  # Django's disconnect watcher waits here until cancelled
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        await app(scope, receive, send)
        return sent

    return Answer(async_to_sync(run)())
