"""The web side of the transport: send a command to the engine of its market and wait
for the answer, at most ENGINE_ANSWER_TIMEOUT_SECONDS. No engine connected, or no answer
in time: a 503 `service_unavailable` answer with Retry-After, never a hang.

One DEALER socket per thread and shard, connected to every endpoint of the shard (only
the active engine binds, so only it receives). ZMQ_IMMEDIATE: a message is queued only to
a live connection, so with no engine up the send fails at once; heartbeats drop the
connection of an engine that stopped answering them."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import zmq
from django.conf import settings

from core.errors import ServiceUnavailable
from core.metrics import ENGINE_REQUEST_SECONDS
from orders.sequencer.commands import Answer, Command, answers_merge, command_message, error_answer
from orders.sequencer.server import PING
from orders.sequencer.shards import Shard, shard_for, shards

_local = threading.local()
CONNECT_WAIT_MS = 500


def _socket(shard: Shard) -> zmq.Socket[bytes]:
    sockets: dict[str, zmq.Socket[bytes]] | None = getattr(_local, "sockets", None)
    if sockets is None or getattr(_local, "pid", None) != os.getpid():  # a forked worker starts afresh
        sockets = _local.sockets = {}
        _local.pid = os.getpid()
    key = f"{shard.name}@{','.join(shard.endpoints)}"
    socket = sockets.get(key)
    if socket is None:
        socket = sockets[key] = shard_socket(shard)
    return socket


# ZMTP heartbeats: a connection whose engine has not answered a ping for HEARTBEAT_TIMEOUT_MS
# is dropped, and with ZMQ_IMMEDIATE no command is queued to it any more. Without them an
# engine frozen whole (SIGSTOP, a paused VM: its kernel still holds the connection open)
# kept receiving its share of the commands after a standby had taken the shard over.
HEARTBEAT_INTERVAL_MS = 500
HEARTBEAT_TIMEOUT_MS = 1500


def shard_socket(shard: Shard) -> zmq.Socket[bytes]:
    """A web worker's socket to a shard: connected to each of its endpoints (only the
    leading engine binds), commands queued only to live connections."""
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.IMMEDIATE, 1)
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_INTERVAL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    for endpoint in shard.endpoints:
        socket.connect(endpoint)
    return socket


def _unavailable(retry_after: int = 1) -> Answer:
    return error_answer(
        ServiceUnavailable("The matching engine is not available; please retry.", retry_after=retry_after)
    )


def _request(shard: Shard, command: Command, *, timeout: float) -> Answer:
    began = time.perf_counter()
    try:
        return _round_trip(shard, command, timeout=timeout)
    finally:
        ENGINE_REQUEST_SECONDS.observe(time.perf_counter() - began)


def _round_trip(shard: Shard, command: Command, *, timeout: float) -> Answer:
    socket = _socket(shard)
    request_id = os.urandom(8)
    message = command_message(request_id, command, timeout=timeout)
    try:
        socket.send_multipart(message, zmq.NOBLOCK)
    except zmq.Again:
        # No connection to an engine yet: a new socket still connecting, or an engine
        # starting. A short wait, then 503 (never a hang).
        if not socket.poll(CONNECT_WAIT_MS, zmq.POLLOUT):
            return _unavailable()
        socket.send_multipart(message, zmq.NOBLOCK)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not socket.poll(int(remaining * 1000) + 1):
            return _unavailable()
        reply_id, payload = socket.recv_multipart()
        if reply_id == request_id:  # else the late answer of a request that timed out
            answer: Answer = json.loads(payload)
            return answer


def zmq_engine_call(command: Command, *, market: str | None) -> Answer:
    timeout = settings.ENGINE_ANSWER_TIMEOUT_SECONDS
    if market is not None:
        return _request(shard_for(market), command, timeout=timeout)
    # Every shard (a cancel-all without a market; a cancel, which names no market): merged.
    every = shards()
    if len(every) == 1:
        return _request(every[0], command, timeout=timeout)
    return answers_merge(command, [_request(shard, command, timeout=timeout) for shard in every])


def engines_health(*, timeout: float = 0.5) -> dict[str, Any]:
    """Each shard's engine: its figures and its clock's offset from this host's, or "down"."""
    found: dict[str, Any] = {}
    for shard in shards():
        asked = time.time()
        # Not _request: a ping is not an order's round trip (platform_engine_request_seconds).
        # Counted there, /healthz's and each scrape's pings were its quantiles on an idle
        # platform, and a hung engine's 0.5 s timeouts fired PlatformEngineRoundTripSlow.
        answer = _round_trip(shard, {"op": PING}, timeout=timeout)
        if "error" in answer:
            found[shard.name] = "down"
            continue
        # Commands carry wall-clock deadlines (commands.APPLY_BY): an engine whose clock
        # runs ahead of the web hosts' by most of ENGINE_ANSWER_TIMEOUT_SECONDS refuses them all.
        clock = answer.pop("clock", None)
        if isinstance(clock, int | float):
            answer["clock_offset_s"] = round(clock - (asked + time.time()) / 2, 3)
        found[shard.name] = {**answer, "status": "ok"}
    return found
