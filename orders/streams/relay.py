"""How stream messages travel from the engine process to the web processes' consumers.

STREAMS_RELAY selects:

- "layer": the channel layer (CHANNEL_LAYERS). In production that is channels_redis
  (REDIS_URL), which works across processes and hosts; in the test process it is the
  in-memory layer, with the engine running in that process (ENGINE_TRANSPORT=inprocess).
- "zmq": the embedded default (no Redis, no server of any kind). The engine binds a ZeroMQ
  PUB socket; each web process subscribes to it and hands every message to its own
  in-memory channel layer. Channels has no server-less layer that spans processes, and only
  the engine publishes, so a one-way PUB/SUB (pyzmq is already the engine's transport) is
  all that is needed: a few lines instead of a hand-written channel layer.

A message lost on the way (a full queue, a relay restarting) is never silent for the book:
its updates carry a per-market number, and a consumer that sees a gap sends a fresh
snapshot (orders.streams.consumers)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from typing import Any

import zmq
from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.conf import settings

logger = logging.getLogger("orders.streams")
_publisher: zmq.Socket[bytes] | None = None
_publisher_lock = threading.RLock()  # also held while sending: a new lead may rebind
_loop: asyncio.AbstractEventLoop | None = None
_bound_at = 0.0
# Subscribers retry their connection every 100 ms (ZeroMQ's reconnect interval): what a
# new publisher sends sooner would reach nobody, so its first sends wait that long (in the
# announcer thread: no order waits for it).
CONNECT_GRACE_SECONDS = 0.3
_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, threading.Thread] = weakref.WeakKeyDictionary()


def _endpoints() -> list[str]:
    return [e.strip() for e in settings.STREAMS_ZMQ_ENDPOINTS.split(",") if e.strip()]


def relay_publisher_start(*, fresh: bool = False) -> zmq.Socket[bytes] | None:
    """The leading engine binds its PUB socket when it takes the lead, before its first
    batch, so that the web processes are connected by the time it publishes (a standby
    binds nothing until it leads: binding an ipc:// path takes it over). `fresh`: bind
    again (leading anew: another engine may have taken the path meanwhile)."""
    global _publisher, _bound_at
    if settings.STREAMS_RELAY != "zmq":
        return None
    with _publisher_lock:
        if fresh and _publisher is not None:
            _publisher.close(linger=0)
            _publisher = None
        if _publisher is None:
            socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SNDHWM, 100_000)
            socket.bind(settings.STREAMS_ZMQ_BIND or _endpoints()[0])
            _publisher, _bound_at = socket, time.monotonic()
        return _publisher


async def _send_all(layer: BaseChannelLayer, messages: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


def _background_loop() -> asyncio.AbstractEventLoop:
    """One event loop for the engine's sends to an out-of-process layer (Redis): its
    connections are kept between batches."""
    global _loop
    with _publisher_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="streams-relay", daemon=True).start()
        return _loop


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def relay_send(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish (group, message) pairs, in order. Never raises: streams must not break orders."""
    if not messages:
        return
    try:
        if settings.STREAMS_RELAY == "zmq":
            with _publisher_lock:
                publisher = relay_publisher_start()
                time.sleep(max(0.0, _bound_at + CONNECT_GRACE_SECONDS - time.monotonic()))
                if publisher is not None:
                    for group, message in messages:
                        publisher.send_multipart([group.encode(), json.dumps(message).encode()])
            return
        layer = get_channel_layer()
        if layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer) and not _loop_running():
            # This process's consumers (tests, the inprocess engine).
            async_to_sync(_send_all)(layer, messages)
        else:
            # Redis; or a caller whose thread runs an event loop while calling this synchronously
            # (Playwright's sync API in a browser test), which async_to_sync refuses.
            asyncio.run_coroutine_threadsafe(_send_all(layer, messages), _background_loop()).result(timeout=2)
    except Exception:
        logger.exception("stream messages not published")


async def relay_listen() -> None:
    """In a web process (zmq relay): start, once per event loop, the thread that hands
    what the engines publish to this process's channel layer. A plain blocking socket in a
    thread of its own: it reconnects to a new leader by itself (as ZeroMQ does) whatever
    the event loop."""
    if settings.STREAMS_RELAY != "zmq":
        return
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()
    if loop not in _listeners and layer is not None:
        thread = threading.Thread(target=_forward, args=(loop, layer), name="streams-relay-sub", daemon=True)
        _listeners[loop] = thread
        thread.start()


def _forward(loop: asyncio.AbstractEventLoop, layer: BaseChannelLayer) -> None:
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 100_000)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    for endpoint in _endpoints():
        socket.connect(endpoint)
    while not loop.is_closed():
        if not socket.poll(1000):
            continue
        group, payload = socket.recv_multipart()
        try:  # group_send never yields before the message is queued: the order is kept
            asyncio.run_coroutine_threadsafe(layer.group_send(group.decode(), json.loads(payload)), loop)
        except (RuntimeError, ValueError):
            logger.exception("a stream message not relayed")
    socket.close(linger=0)
