"""A consumer that falls behind is never left with a silent hole (docs/streams.md, "Slow
consumers"): what its channel layer could not deliver (a full queue, a message that waited
too long) is numbered, so the client sees the gap, and a fresh snapshot follows; and a
connection's subscriptions last as long as the connection, not a day.

The messages go through the relay's fan-out (orders.streams.relay._fan_out), as a web
process hands an engine batch to its layer: every group_send of the batch started in one
callback of the event loop, before the consumer handles any of them."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings

from orders.streams import relay
from orders.streams.relay import Received, _fan_out
from tests.factories import market_create
from tests.orders.streams.support import StreamClient, stream_connect

pytestmark = pytest.mark.django_db(transaction=True)

CHANNEL = "trades:ETH-USDT"
GROUP = "trades.ETH-USDT"


def _trade(number: int) -> dict[str, Any]:
    return {
        "id": str(10_000 + number),
        "price": "2000.00000000",
        "quantity": "0.10000000",
        "taker_side": "buy",
        "executed_at": "2026-12-05T10:00:00.000000Z",
    }


def _batch(count: int) -> bytes:
    return orjson.dumps([(GROUP, {"type": "stream.data", "channel": CHANNEL, "data": _trade(i)}) for i in range(count)])


async def _subscribed() -> StreamClient:
    client = await stream_connect()
    await client.send({"op": "subscribe", "channels": [CHANNEL]})
    assert await client.op() == {"op": "subscribed", "channels": [CHANNEL]}
    assert (await client.until(CHANNEL, 1))[0]["type"] == "snapshot"
    return client


async def _drain(client: StreamClient, *, last_sequence: int) -> list[dict[str, Any]]:
    """Everything the channel received once its message numbered `last_sequence` is in
    (however slow the loaded machine's snapshot read), then until it falls silent."""
    deadline = time.monotonic() + 30
    received = client.data[CHANNEL]
    while not received or received[-1]["sequence"] < last_sequence:
        assert time.monotonic() < deadline, received[-3:]
        if not await client.ws.receive_nothing(timeout=0.1):
            await client.receive()
    while not await client.ws.receive_nothing(timeout=0.5):
        await client.receive()
    return received


def _layer_with(**config: Any) -> dict[str, Any]:
    default: dict[str, Any] = dict(settings.CHANNEL_LAYERS["default"])
    return {"default": {**default, "CONFIG": {**default.get("CONFIG", {}), **config}}}


def test_messages_beyond_a_full_queue_are_numbered_and_followed_by_a_snapshot():
    market_create("ETH-USDT")
    sent = 12

    async def scenario() -> None:
        client = await _subscribed()
        _fan_out(asyncio.get_running_loop(), get_channel_layer(), _batch(sent))
        messages = await _drain(client, last_sequence=1 + sent + 1)
        await client.close()
        delivered = [m["data"]["id"] for m in messages if m["type"] == "update"]
        assert len(delivered) < sent  # the queue holds 5: the rest could not be delivered
        # Every message sent is counted in the numbering: the client sees the gap ...
        assert messages[-1]["sequence"] == 1 + sent + 1  # the first snapshot, 12 updates, a fresh snapshot
        gap_at = next(i for i, (a, b) in enumerate(itertools.pairwise(messages)) if b["sequence"] != a["sequence"] + 1)
        # ... and the message that ends it is a fresh snapshot.
        assert messages[gap_at + 1]["type"] == "snapshot"
        assert messages[gap_at + 1]["sequence"] - messages[gap_at]["sequence"] - 1 == sent - len(delivered)

    with override_settings(CHANNEL_LAYERS=_layer_with(capacity=5)):
        async_to_sync(scenario)()


def test_a_message_that_waited_too_long_is_numbered_and_the_subscription_kept():
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await _subscribed()
        layer = get_channel_layer()
        # Every message is too old once queued: the messages of the batch that were not
        # taken at once by the waiting consumer are dropped from its queue.
        layer.expiry = -1
        _fan_out(asyncio.get_running_loop(), layer, _batch(3))
        messages = await _drain(client, last_sequence=5)
        updates = [m for m in messages if m["type"] == "update"]
        assert len(updates) < 3
        # Each counted (the first snapshot, 3 messages, a fresh snapshot), the last a snapshot.
        assert (messages[-1]["type"], messages[-1]["sequence"]) == ("snapshot", 5)
        layer.expiry = 60
        _fan_out(asyncio.get_running_loop(), layer, _batch(1))  # still subscribed
        messages = await _drain(client, last_sequence=6)
        assert (messages[-1]["type"], messages[-1]["sequence"]) == ("update", 6)
        await client.close()

    with override_settings(CHANNEL_LAYERS=_layer_with()):
        async_to_sync(scenario)()


def test_a_subscription_older_than_a_day_still_receives():
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await _subscribed()
        layer = get_channel_layer()
        for members in layer.groups.values():  # joined two days ago
            for name in members:
                members[name] = time.time() - 2 * 86_400
        _fan_out(asyncio.get_running_loop(), layer, _batch(1))
        messages = await _drain(client, last_sequence=2)
        assert [(m["type"], m["sequence"]) for m in messages] == [("snapshot", 1), ("update", 2)]
        await client.close()

    with override_settings(CHANNEL_LAYERS=_layer_with()):
        async_to_sync(scenario)()


def _numbered(count: int, *, number: int, source: str = "engine-a", shard: str = "main") -> bytes:
    """A batch as the relay carries it: numbered per sending engine process, naming its shard."""
    messages = [
        (GROUP, {"type": "stream.data", "channel": CHANNEL, "data": _trade(number * 100 + i)}) for i in range(count)
    ]
    return orjson.dumps({"source": source, "number": number, "shard": shard, "messages": messages})


def test_a_batch_lost_between_the_engine_and_the_web_process_is_a_gap_and_a_fresh_snapshot():
    # A batch lost on the way (a Redis subscription that reconnected, a publish that failed,
    # a ZeroMQ queue that overflowed) left no trace: trades and fills never came, and the
    # numbering went on without a gap (measured: 9 fills of 75 lost, no gap, on a Redis
    # subscriber whose connection was killed). Batches are numbered per engine process now;
    # a jump is a gap on every channel of the connection (which channels the lost batch
    # concerned cannot be known), each followed by a fresh snapshot.
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await _subscribed()
        loop, layer = asyncio.get_running_loop(), get_channel_layer()
        received = Received()
        _fan_out(loop, layer, _numbered(1, number=1), received)
        _fan_out(loop, layer, _numbered(1, number=2), received)
        assert [(m["type"], m["sequence"]) for m in await _drain(client, last_sequence=3)] == [
            ("snapshot", 1),
            ("update", 2),
            ("update", 3),
        ]
        _fan_out(loop, layer, _numbered(1, number=4), received)  # number 3 lost on the way
        messages = (await _drain(client, last_sequence=6))[3:]
        assert [(m["type"], m["sequence"]) for m in messages] == [("snapshot", 5), ("update", 6)]
        # The engine of another shard numbers its own batches: no gap.
        _fan_out(loop, layer, _numbered(1, number=1, source="engine-b", shard="other"), received)
        _fan_out(loop, layer, _numbered(1, number=5), received)
        messages = (await _drain(client, last_sequence=8))[5:]
        assert [(m["type"], m["sequence"]) for m in messages] == [("update", 7), ("update", 8)]
        await client.close()

    with override_settings(CHANNEL_LAYERS=_layer_with()):
        async_to_sync(scenario)()


def test_a_shards_new_engine_process_is_a_gap_and_a_fresh_snapshot():
    # A failover or a restart: the engine before may have committed batches it never
    # published (killed between its commit and its publish). Its successor numbers its own
    # batches from 1, so nothing told of the loss: the trades, fills and orders of those
    # batches never came, without a gap. A shard's batches from another process than before
    # are a gap now; another shard's engine is not.
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await _subscribed()
        loop, layer = asyncio.get_running_loop(), get_channel_layer()
        received = Received()
        _fan_out(loop, layer, _numbered(1, number=1), received)
        _fan_out(loop, layer, _numbered(1, number=1, source="engine-c", shard="other"), received)
        messages = await _drain(client, last_sequence=3)
        assert [(m["type"], m["sequence"]) for m in messages] == [("snapshot", 1), ("update", 2), ("update", 3)]
        _fan_out(loop, layer, _numbered(1, number=1, source="engine-b"), received)  # main's new leader
        messages = (await _drain(client, last_sequence=6))[3:]
        assert [(m["type"], m["sequence"]) for m in messages] == [("snapshot", 5), ("update", 6)]
        _fan_out(loop, layer, _numbered(1, number=2, source="engine-b"), received)
        messages = (await _drain(client, last_sequence=7))[5:]  # 4 was the gap
        assert [(m["type"], m["sequence"]) for m in messages] == [("update", 7)]
        await client.close()

    with override_settings(CHANNEL_LAYERS=_layer_with()):
        async_to_sync(scenario)()


def test_a_web_process_that_falls_behind_holds_a_bounded_backlog_and_tells_of_what_it_dropped(monkeypatch):
    # The relay's thread hands every batch it reads to the event loop; a loop that falls
    # behind (a web process short of CPU) kept them all, without bound, however far behind
    # it was. Now at most MAX_PENDING_BATCHES wait; a batch beyond is dropped, and the next
    # one handed over is a gap (every channel of every connection: a fresh snapshot).
    monkeypatch.setattr(relay, "MAX_PENDING_BATCHES", 10, raising=False)  # the test is short
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await _subscribed()
        loop, layer = asyncio.get_running_loop(), get_channel_layer()
        received = Received()
        for number in range(1, 51):  # the loop runs nothing meanwhile: it is this coroutine's
            _fan_out(loop, layer, _numbered(1, number=number), received)
        # The callbacks waiting to run: the 10 batches and one or two of the test's own (was 51).
        assert len(loop._ready) < 15  # type: ignore[attr-defined]
        messages = await _drain(client, last_sequence=11)
        assert [(m["type"], m["sequence"]) for m in messages] == [
            ("snapshot", 1),
            *(("update", n) for n in range(2, 12)),
        ]
        _fan_out(loop, layer, _numbered(1, number=51), received)
        messages = (await _drain(client, last_sequence=14))[11:]
        assert [(m["type"], m["sequence"]) for m in messages] == [("snapshot", 13), ("update", 14)]
        await client.close()

    with override_settings(CHANNEL_LAYERS=_layer_with()):
        async_to_sync(scenario)()
