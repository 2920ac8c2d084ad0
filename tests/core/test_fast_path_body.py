"""core.api.fast reads a routed request's body into memory before deciding whether it
answers it: it must stop at DATA_UPLOAD_MAX_MEMORY_SIZE and hand the request, body intact,
to Django (which spools a large body to disk and answers 400 request_too_large). It read
any body whole: a 300 MB POST /api/orders, without credentials, raised a web worker's
peak memory from 133 MB to 747 MB."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest
from django.test import override_settings

from core.api.fast import FastPath
from orders.api.urls import FAST_ROUTES
from tests.asgi import post_scope

CHUNK = 64 * 1024
CHUNKS = 64  # 4 MiB in all
LIMIT = 256 * 1024


class Downstream:
    """Django's handler as the fast path sees it: records how far the body had been read
    when the request was handed over, then reads the rest."""

    request_class = ASGIRequest

    def __init__(self, pulled: list[int]) -> None:
        self.pulled = pulled
        self.pulled_at_handover: int | None = None
        self.body = b""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.pulled_at_handover = self.pulled[0]
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _post(fast: FastPath, pulled: list[int]) -> None:
    scope = post_scope(headers={"Content-Type": "application/json"})

    async def receive() -> dict[str, Any]:
        pulled[0] += 1
        n = pulled[0]
        return {"type": "http.request", "body": bytes([n % 256]) * CHUNK, "more_body": n < CHUNKS}

    async def send(message: Any) -> None:
        pass

    async_to_sync(fast)(scope, receive, send)


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=LIMIT)
def test_a_body_beyond_the_upload_limit_is_handed_to_django_unread():
    pulled = [0]
    downstream = Downstream(pulled)
    fast = FastPath(downstream, routes=FAST_ROUTES)  # type: ignore[arg-type]
    assert fast.enabled
    _post(fast, pulled)
    assert downstream.pulled_at_handover is not None
    assert downstream.pulled_at_handover * CHUNK <= LIMIT + CHUNK, downstream.pulled_at_handover
    expected = b"".join(bytes([n % 256]) * CHUNK for n in range(1, CHUNKS + 1))
    assert downstream.body == expected  # every byte, in order
