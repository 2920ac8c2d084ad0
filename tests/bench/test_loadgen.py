"""The load generator's HTTP client (bench.loadgen.Connection) against a scripted server on a
real socket: what it sends, and how it reads answers split, joined, closed or framed in a way
it does not read."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from bench.loadgen import Connection, HttpError

Script = Callable[[socket.socket, list[bytes]], None]


def _read_request(conn: socket.socket, buffer: bytearray) -> bytes:
    """One whole request (headers and Content-Length body) off `conn`."""
    while b"\r\n\r\n" not in buffer:
        buffer += conn.recv(65536)
    end = buffer.index(b"\r\n\r\n") + 4
    length = next(
        int(line.split(b":", 1)[1])
        for line in buffer[:end].split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(buffer) < end + length:
        buffer += conn.recv(65536)
    request = bytes(buffer[: end + length])
    del buffer[: end + length]
    return request


@contextmanager
def _server(*scripts: Script) -> Iterator[tuple[int, list[bytes]]]:
    """Accepts one connection per script, in turn; each script reads and answers on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        for script in scripts:
            conn, _ = listener.accept()
            with conn:
                script(conn, received)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        thread.join(timeout=5)
        listener.close()
    assert not thread.is_alive()


def _answers(*answers: bytes, split: bool = False) -> Script:
    def script(conn: socket.socket, received: list[bytes]) -> None:
        buffer = bytearray()
        for answer in answers:
            received.append(_read_request(conn, buffer))
            if split:  # the head and the body in separate segments
                conn.sendall(answer[:20])
                conn.sendall(answer[20:])
            else:
                conn.sendall(answer)

    return script


OK = b'HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"id":"a"}\n'
GONE = b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


def test_a_request_is_one_write_with_http_clients_headers_and_answers_are_read_in_order() -> None:
    with _server(_answers(OK, OK, split=True)) as (port, received):
        conn = Connection("127.0.0.1", port, timeout=5)
        body = b'{"market":"BTC-USD"}'
        first = conn.request("POST", "/api/orders", body, {"Authorization": "Bearer t", "Connection": "keep-alive"})
        second = conn.request("POST", "/api/orders/1/cancel", b"", {"Authorization": "Bearer t"})
        conn.close()
    assert first == second == (201, b'{"id":"a"}\n')
    assert received[0] == (
        b"POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n"
        b"Content-Length: 20\r\nAuthorization: Bearer t\r\nConnection: keep-alive\r\n\r\n" % port + body
    )
    assert received[1].endswith(b"Content-Length: 0\r\nAuthorization: Bearer t\r\n\r\n")


def test_answers_arriving_together_are_each_read_whole() -> None:
    def both_at_once(conn: socket.socket, received: list[bytes]) -> None:
        buffer = bytearray()
        received.append(_read_request(conn, buffer))
        conn.sendall(OK + OK)  # the second answer arrives with the first: kept for the next request
        received.append(_read_request(conn, buffer))

    with _server(both_at_once) as (port, received):
        conn = Connection("127.0.0.1", port, timeout=5)
        assert conn.request("POST", "/a", b"", {}) == (201, b'{"id":"a"}\n')
        assert conn.request("POST", "/b", b"", {}) == (201, b'{"id":"a"}\n')
        conn.close()
    assert len(received) == 2


def test_connection_close_opens_a_new_connection_for_the_next_request() -> None:
    with _server(_answers(GONE), _answers(OK)) as (port, received):
        conn = Connection("127.0.0.1", port, timeout=5)
        assert conn.request("POST", "/a", b"", {}) == (409, b"{}")
        assert conn.request("POST", "/b", b"", {}) == (201, b'{"id":"a"}\n')
        conn.close()
    assert [r.split(b" ")[1] for r in received] == [b"/a", b"/b"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "without Content-Length"),
        (b"garbage\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "closed the connection"),  # cut short
    ],
)
def test_an_answer_it_cannot_read_is_an_error_and_the_connection_is_dropped(answer: bytes, message: str) -> None:
    with _server(_answers(answer)) as (port, _received):
        conn = Connection("127.0.0.1", port, timeout=5)
        with pytest.raises(HttpError, match=message):
            conn.request("POST", "/a", b"", {})
    assert conn.sock is None and conn.pending == b""


def test_a_server_that_does_not_answer_times_out() -> None:
    release = threading.Event()

    def silent(conn: socket.socket, received: list[bytes]) -> None:
        received.append(_read_request(conn, bytearray()))
        release.wait(5)

    with _server(silent) as (port, _received):
        conn = Connection("127.0.0.1", port, timeout=1)
        with pytest.raises(OSError):
            conn.request("POST", "/a", b"", {})
        release.set()
    assert conn.sock is None
