"""WebSocket handshakes to a path that no route serves (config/routing.py's last route).

Channels' URLRouter raises ValueError for them ("No route found for path"), which the server
answered with a 500 and a traceback in its log: `/ws/v1/` (a trailing slash), `/ws/v2`, or
any HTTP path asked for a WebSocket. They are refused as the HTTP API refuses an unknown
path: 404 and the contract's envelope, through the ASGI extension
`websocket.http.response` where the server offers it (uvicorn does), else by closing the
handshake (the server answers 403)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from core.api.exception_handler import error_body
from core.errors import NotFound

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HTTP_RESPONSE = "websocket.http.response"


async def websocket_not_found(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """An ASGI application: the handshake refused with 404 `not_found`."""
    if (await receive()).get("type") != "websocket.connect":
        return
    if HTTP_RESPONSE not in scope.get("extensions", {}):
        await send({"type": "websocket.close"})
        return
    body = json.dumps(error_body(NotFound.code, NotFound.default_message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": f"{HTTP_RESPONSE}.start", "status": NotFound.status, "headers": headers})
    await send({"type": f"{HTTP_RESPONSE}.body", "body": body})
