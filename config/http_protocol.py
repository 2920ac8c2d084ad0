"""The web worker's HTTP/1.1 protocol: uvicorn's (httptools), each answer written at once.

uvicorn writes an answer's head (status line and headers) as soon as the application sends
`http.response.start`, and its body with `http.response.body`: two writes, and on a
connection with TCP_NODELAY two TCP segments, each a system call whose delivery (on the
loopback, the receiver's side of TCP too) the web worker pays for, and each a wake-up of
the client. The fast path (core.api.fast) and Django send both messages in the same step of
the event loop, so the head is held until the body's write and written with it: one
segment per answer, sent as soon as before. A streamed answer's later chunks are written
as they come, as before."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class WritesCoalesced:
    """An asyncio transport that holds an answer's head (a write starting with the status
    line) until the next write, the body's, and writes both at once; a head that no write
    follows in the same step of the event loop goes out when the step ends, and before the
    transport is closed or half-closed. Anything else is the transport's own."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, *, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data[:9] == b"HTTP/1.1 ":
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a WritesCoalesced transport (a WebSocket upgraded
    from it keeps that transport)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(WritesCoalesced(transport, loop=self.loop))  # type: ignore[arg-type]
