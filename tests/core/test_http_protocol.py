"""The web worker's HTTP protocol (config.http_protocol): an answer's head and body leave
in one write, over a real server and socket as well as on a recording transport."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.sync.client import connect

from config.http_protocol import CoalescingHttpToolsProtocol, WritesCoalesced
from config.uvicorn_worker import PlatformUvicornWorker


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def test_a_head_goes_out_with_the_body_that_follows_it():
    async def main() -> tuple[list[bytes], list[bytes], list[bytes]]:
        transport = RecordingTransport()
        coalesced = WritesCoalesced(transport, loop=asyncio.get_running_loop())
        coalesced.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        held = list(transport.writes)
        coalesced.write(b"{}")  # written at once, with the head: not at the step's end
        answered = list(transport.writes)
        coalesced.write(b"chunk")  # not a head (a streamed answer's next chunk): as it comes
        await asyncio.sleep(0)
        return held, answered, transport.writes

    held, answered, after = asyncio.run(main())
    assert held == []
    assert answered == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert after == [*answered, b"chunk"]


def test_a_head_alone_goes_out_when_the_step_ends_or_at_close_and_abort_drops_it():
    async def main() -> tuple[list[bytes], RecordingTransport, RecordingTransport]:
        loop = asyncio.get_running_loop()
        alone, closed, aborted = RecordingTransport(), RecordingTransport(), RecordingTransport()
        WritesCoalesced(alone, loop=loop).write(b"HTTP/1.1 100 Continue\r\n\r\n")
        first, second = WritesCoalesced(closed, loop=loop), WritesCoalesced(aborted, loop=loop)
        first.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        first.close()
        second.write(b"HTTP/1.1 200 OK\r\n\r\n")
        second.abort()
        during = list(alone.writes)
        await asyncio.sleep(0)  # the step ends
        assert during == []
        return alone.writes, closed, aborted

    alone, closed, aborted = asyncio.run(main())
    assert alone == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert closed.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"] and closed.closed
    assert aborted.writes == [] and aborted.aborted


def test_anything_else_is_the_transports_own():
    transport = RecordingTransport()
    coalesced = WritesCoalesced(transport, loop=asyncio.new_event_loop())
    assert coalesced.get_extra_info("peername") == ("127.0.0.1", 5)
    assert coalesced.is_closing() is False


def test_the_web_worker_uses_it():
    assert PlatformUvicornWorker.CONFIG_KWARGS["http"] is CoalescingHttpToolsProtocol


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":  # the streams' upgrade: the same transport, handed over
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": f"echo {message['text']}"})
        await send({"type": "websocket.close"})
        return
    assert scope["type"] == "http"
    body = b'{"status": "ok"}'
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class _Counted:
    """The socket's transport, its writes counted (what reaches the kernel)."""

    writes = 0

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: Any) -> None:
        type(self).writes += 1
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountedCoalescing(CoalescingHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Counted(transport))  # type: ignore[arg-type]


class CountedPlain(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Counted(transport))  # type: ignore[arg-type]


def _serve(protocol: type[asyncio.Protocol]) -> tuple[uvicorn.Server, threading.Thread, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    return server, thread, port


def _writes_for_three_answers(protocol: type[asyncio.Protocol]) -> int:
    _Counted.writes = 0
    server, thread, port = _serve(protocol)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            for _ in range(3):  # keep-alive: each answer of the connection alike
                client.sendall(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
                data = b""
                while not data.endswith(b'{"status": "ok"}'):
                    chunk = client.recv(65536)
                    assert chunk, "the connection closed before the answer's end"
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200 OK")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return _Counted.writes


def test_a_real_server_writes_each_answer_once():
    assert _writes_for_three_answers(CountedCoalescing) == 3
    assert _writes_for_three_answers(CountedPlain) == 6  # uvicorn alone: head, then body


def test_a_websocket_upgraded_from_it_works():
    server, thread, port = _serve(CoalescingHttpToolsProtocol)
    try:
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as websocket:
            websocket.send("ping")
            assert websocket.recv(timeout=5) == "echo ping"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
