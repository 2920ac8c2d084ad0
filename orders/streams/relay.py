"""How stream messages travel from the engine process to the web processes' consumers.

A committed batch's messages (orders.streams.publish) go out as **one** message per batch:
a JSON list of (group, message) pairs. Each web process receives every batch and fans it
out, in order, into its own in-memory channel layer, whose groups its consumers joined. The
engine thus pays one send per batch, whatever the number of messages or subscribers.

STREAMS_RELAY selects the way:

- "redis" (production, REDIS_URL set): one Redis PUBLISH per batch on a channel named for
  REDIS_URL's database (Redis pub/sub ignores databases); each web process subscribes in a
  thread of its own. Works across hosts.
- "zmq": the embedded default (no Redis, no server of any kind). The engine binds a ZeroMQ
  PUB socket and sends one frame per batch; each web process subscribes to it. Channels
  has no server-less layer that spans processes, and only the engine publishes, so a
  one-way PUB/SUB (pyzmq is already the engine's transport) is all that is needed.
- "layer": group_send each message into this process's channel layer (tests: the
  in-memory layer, with the engine running in that process, ENGINE_TRANSPORT=inprocess).

Why not channels_redis's group_send from the engine (the previous way): it is several
Redis round trips per message (expire and read the group's members, then a script), ~350
messages per batch, in the engine process, holding the GIL against the sequencer.

A message lost on the way (a full queue, a relay restarting) is never silent: the book's
updates carry a per-market number, and a consumer that sees a gap sends a fresh snapshot
(orders.streams.consumers); and every batch carries its engine process's `source` and a
`number` (1, 2, ...; a batch that failed to leave still uses its number), so a web process
that receives a number beyond the next one of that source tells every consumer
(orders.streams.layer, `gap`): trades, fills, orders, tickers and candles are then numbered
with a gap and snapshotted afresh too, instead of going missing without a trace. A batch also
names the shard its engine leads: when a shard's batches come from another process than
before (a failover, a restart), that is a gap too, since what the engine before committed and
had not yet published when it died is lost with it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import zmq
from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connections

from core.logging import LinesEvery
from core.metrics import STREAM_BATCHES_UNPUBLISHED
from core.platform import platform_key_prefix
from orders.streams.layer import StreamChannelLayer

logger = logging.getLogger("orders.streams")
Message = tuple[str, dict[str, Any]]  # (group, message)
_publisher: zmq.Socket[bytes] | None = None
_publisher_lock = threading.RLock()  # also held while sending: a new lead may rebind
_redis: redis.Redis | None = None
_loop: asyncio.AbstractEventLoop | None = None
_bound_at = 0.0
# Subscribers retry their connection every 100 ms (ZeroMQ's reconnect interval): what a
# new publisher sends sooner would reach nobody, so its first sends wait that long (in the
# announcer thread: no order waits for it).
CONNECT_GRACE_SECONDS = 0.3
SUBSCRIBE_WAIT_SECONDS = 2.0
# This process's batches as the relay numbers them (a web process keeps the last number
# of each source it received: a jump is a lost batch).
SOURCE = uuid.uuid4().hex[:12]
_sent = 0
_sent_lock = threading.Lock()
_shard = ""  # the shard this process leads (relay_lead), named in its batches
_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, threading.Event] = weakref.WeakKeyDictionary()


def _endpoints() -> list[str]:
    return [e.strip() for e in settings.STREAMS_ZMQ_ENDPOINTS.split(",") if e.strip()]


def _redis_client(**options: Any) -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, **options)


def relay_redis_channel(client: redis.Redis) -> str:
    """Pub/sub ignores Redis's databases: the channel also names the platform, by its key
    prefix (PLATFORM_KEY_PREFIX, else a digest of its database's engine and name, read
    from the connection: a test worker's database is its own), so that two platforms on
    one Redis server never hear each other's batches. Not the database's host or port: an
    engine and a web process reaching it by different addresses heard nothing of each other."""
    prefix = platform_key_prefix(connections["default"].settings_dict)
    channel = f"orders.streams.db{client.connection_pool.connection_kwargs.get('db', 0)}"
    return f"{channel}.{prefix}" if prefix else channel


def relay_lead(*, shard: str) -> None:
    """This engine process leads `shard` from now on: its batches say so (_fan_out)."""
    global _shard
    _shard = shard


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


async def _send_all(layer: BaseChannelLayer, messages: list[Message]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


def _background_loop() -> asyncio.AbstractEventLoop:
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


def _encoded(messages: list[Message]) -> bytes:
    """The batch numbered: its number is taken first, so that a batch that fails to leave
    (an encoding error, a Redis that does not answer) is still a gap for the receivers."""
    # orjson: a batch of 100 orders is ~400 messages, ~85 KB, written on the engine's
    # announcer thread: 0.6 ms with the standard library's encoder, 0.12 ms with orjson
    # (docs/performance.md, "The streams' messages encoded by orjson"). Integer keys as text,
    # as json.dumps writes them.
    global _sent
    with _sent_lock:
        _sent += 1
        number = _sent
    batch = {"source": SOURCE, "number": number, "shard": _shard, "messages": messages}
    return orjson.dumps(batch, option=orjson.OPT_NON_STR_KEYS)


def relay_send(messages: list[Message]) -> None:
    """Publish a batch's (group, message) pairs, in order, as one message. Never raises:
    streams must not break orders."""
    global _redis
    if not messages:
        return
    try:
        if settings.STREAMS_RELAY == "zmq":
            payload = _encoded(messages)
            with _publisher_lock:
                publisher = relay_publisher_start()
                time.sleep(max(0.0, _bound_at + CONNECT_GRACE_SECONDS - time.monotonic()))
                if publisher is not None:
                    publisher.send(payload)
            return
        if settings.STREAMS_RELAY == "redis":
            if _redis is None:
                _redis = _redis_client(socket_timeout=2)  # a stuck Redis must not hold the announcer
            _redis.publish(relay_redis_channel(_redis), _encoded(messages))
            return
        layer = get_channel_layer()
        if layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer) and not _loop_running():
            # This process's consumers (tests, the inprocess engine).
            async_to_sync(_send_all)(layer, messages)
        else:
            # A caller whose thread runs an event loop while calling this synchronously
            # (Playwright's sync API in a browser test), which async_to_sync refuses.
            asyncio.run_coroutine_threadsafe(_send_all(layer, messages), _background_loop()).result(timeout=2)
    except Exception as exc:
        _unpublished(exc)


UNPUBLISHED_LOG_EVERY_SECONDS = 10.0
UNPUBLISHED_LINES = LinesEvery(UNPUBLISHED_LOG_EVERY_SECONDS)


def _unpublished(exc: Exception) -> None:
    """Count a batch not published; log it at most once per UNPUBLISHED_LOG_EVERY_SECONDS
    with how many there were since the last line (a Redis outage is a few hundred batches a
    second, and a traceback each ran on the engine's GIL and flooded its log)."""
    STREAM_BATCHES_UNPUBLISHED.inc()
    count = UNPUBLISHED_LINES.due("relay")
    if count is not None:
        logger.error(
            "stream messages not published: %s batch(es) since the last such line (at most one every %g s)",
            count,
            UNPUBLISHED_LOG_EVERY_SECONDS,
            exc_info=exc,
        )


async def relay_listen() -> None:
    """In a web process (zmq or redis relay): start, once per event loop, the thread that
    hands what the engines publish to this process's channel layer, and wait (up to 2 s)
    until it is subscribed, so that a snapshot taken next is followed by every update."""
    if settings.STREAMS_RELAY not in ("zmq", "redis"):
        return
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()
    if layer is None:
        return
    ready = _listeners.get(loop)
    if ready is None:
        ready = _listeners[loop] = threading.Event()
        target = _forward_zmq if settings.STREAMS_RELAY == "zmq" else _forward_redis
        threading.Thread(target=target, args=(loop, layer, ready), name="streams-relay-sub", daemon=True).start()
    if not ready.is_set():
        await asyncio.to_thread(ready.wait, SUBSCRIBE_WAIT_SECONDS)


# Batches handed to an event loop and not yet in its layer: at most MAX_PENDING_BATCHES. The
# relay's thread reads batches as fast as the engine sends them; a loop that fell behind (a
# web process short of CPU) kept every one, without bound. Beyond it a batch is dropped, and
# the next one handed over is a gap (every consumer resynchronises), as a batch lost before
# this process is.
MAX_PENDING_BATCHES = 500
_pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()
_pending_lock = threading.Lock()
DROPPED_LINES = LinesEvery(10.0)


def _pending_add(loop: asyncio.AbstractEventLoop, count: int) -> int:
    with _pending_lock:
        pending = _pending[loop] = _pending.get(loop, 0) + count
        if pending <= 0:
            del _pending[loop]
        return pending


@dataclass(slots=True)
class Received:
    """What one relay subscription has received: the last batch number of each engine
    process (`numbers`), the process each shard's batches last came from (`leaders`), and
    whether a batch was dropped since the last one handed over (`dropped`)."""

    numbers: dict[str, int] = field(default_factory=dict)
    leaders: dict[str, str] = field(default_factory=dict)
    dropped: bool = False

    def gap_before(self, *, source: str, number: int, shard: str) -> bool:
        """Whether batches were lost before this one (and note it as received): a number
        beyond the next one of its source, a shard's batches from another process than
        before, or a batch this process dropped."""
        last = self.numbers.get(source)
        gap = self.dropped or (last is not None and number > last + 1)
        self.numbers[source] = max(number, last or 0)
        if shard:
            gap = gap or self.leaders.get(shard, source) != source
            self.leaders[shard] = source
        self.dropped = False
        return gap


def _fan_out(
    loop: asyncio.AbstractEventLoop,
    layer: BaseChannelLayer,
    payload: bytes | str,
    received: Received | None = None,
) -> None:
    """One batch into this process's layer. The group_sends are started in the batch's
    order, in one callback of the loop: the event loop runs tasks first in, first out, and
    each queues its message before any later one (the in-memory group_send's sends are
    tasks of their own), so every channel gets its messages in the engine's order.
    `received`: what the subscription received before; a batch after lost ones
    (Received.gap_before: the engine before a failover may have committed batches it never
    published) is preceded by the layer's gap notice to every consumer. A batch beyond
    MAX_PENDING_BATCHES waiting for the loop is dropped (a gap for the next one)."""

    def start() -> None:
        if gap and isinstance(layer, StreamChannelLayer):
            loop.create_task(layer.gap())
        for group, message in messages:
            loop.create_task(layer.group_send(group, message))
        loop.create_task(delivered())  # runs after the batch's sends (first in, first out)

    async def delivered() -> None:
        _pending_add(loop, -1)

    try:
        if _pending_add(loop, 1) > MAX_PENDING_BATCHES:
            _pending_add(loop, -1)
            if received is not None:
                received.dropped = True
            count = DROPPED_LINES.due("dropped")
            if count is not None:
                logger.warning("stream batches dropped, the event loop behind: %s since the last such line", count)
            return
        batch = orjson.loads(payload)
        gap = False
        if isinstance(batch, dict):
            source, number, messages = str(batch["source"]), int(batch["number"]), batch["messages"]
            if received is not None:
                gap = received.gap_before(source=source, number=number, shard=str(batch.get("shard") or ""))
        else:
            messages = batch  # unnumbered (an engine of the previous version)
        loop.call_soon_threadsafe(start)
    except (RuntimeError, ValueError, KeyError, TypeError):
        _pending_add(loop, -1)
        logger.exception("a batch of stream messages not relayed")


def _forward_zmq(loop: asyncio.AbstractEventLoop, layer: BaseChannelLayer, ready: threading.Event) -> None:
    """A plain blocking socket in a thread of its own: it reconnects to a new leader by
    itself (as ZeroMQ does) whatever the event loop."""
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 100_000)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    for endpoint in _endpoints():
        socket.connect(endpoint)
    ready.set()  # connecting is asynchronous in ZeroMQ; the publisher waits for it (above)
    received = Received()
    while not loop.is_closed():
        if socket.poll(1000):
            _fan_out(loop, layer, socket.recv(), received)
    socket.close(linger=0)


def _forward_redis(loop: asyncio.AbstractEventLoop, layer: BaseChannelLayer, ready: threading.Event) -> None:
    """Subscribed again after a lost connection (what was published meanwhile is lost: the
    batches' numbers make every subscriber resynchronise)."""
    client = _redis_client()
    channel = relay_redis_channel(client)
    received = Received()
    while not loop.is_closed():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(channel)
            while not loop.is_closed():
                message = pubsub.get_message(timeout=1.0)
                ready.set()  # the first read took the subscription's confirmation: subscribed
                if message is not None:
                    _fan_out(loop, layer, message["data"], received)
        except redis.RedisError:
            logger.exception("stream relay: Redis subscription lost; subscribing again")
            time.sleep(0.5)
        finally:
            pubsub.close()
