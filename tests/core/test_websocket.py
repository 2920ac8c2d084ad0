"""A WebSocket handshake to a path no route serves is refused with 404, never a 500
(core/websocket.py): Channels' router raised ValueError for `/ws/v1/`, `/ws/v2` or an HTTP
path, and the server answered 500 with a traceback in its log."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import ApplicationCommunicator, WebsocketCommunicator

from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

UNKNOWN_PATHS = ["/ws/v1/", "/ws/v2", "/ws", "/api/orders", "/"]


def _scope(path: str, extensions: dict[str, dict[str, str]]) -> dict[str, object]:
    return {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "subprotocols": [],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "extensions": extensions,
    }


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_an_unknown_path_is_404_with_the_envelope(path):
    """A server that offers `websocket.http.response` (uvicorn) answers the handshake 404."""

    async def scenario() -> list[dict[str, object]]:
        communicator = ApplicationCommunicator(application, _scope(path, {"websocket.http.response": {}}))
        await communicator.send_input({"type": "websocket.connect"})
        start = await communicator.receive_output(timeout=5)
        body = await communicator.receive_output(timeout=5)
        await communicator.wait(timeout=5)
        return [start, body]

    start, body = async_to_sync(scenario)()
    assert start["type"] == "websocket.http.response.start" and start["status"] == 404
    assert (b"content-type", b"application/json") in start["headers"]  # type: ignore[operator]
    assert body["type"] == "websocket.http.response.body"
    assert json.loads(body["body"]) == {"error": {"code": "not_found", "message": "Not found."}}  # type: ignore[arg-type]


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_an_unknown_path_is_refused_by_a_server_without_the_extension(path):
    async def scenario() -> tuple[bool, object]:
        communicator = WebsocketCommunicator(application, path)
        connected, code = await communicator.connect(timeout=5)
        await communicator.wait(timeout=5)
        return connected, code

    assert async_to_sync(scenario)()[0] is False


def test_the_streams_path_still_connects():
    async def scenario() -> dict[str, object]:
        communicator = WebsocketCommunicator(application, "/ws/v1")
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        await communicator.send_json_to({"op": "ping"})
        answer: dict[str, object] = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return answer

    assert async_to_sync(scenario)() == {"op": "pong"}
