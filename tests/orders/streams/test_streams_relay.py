"""The relay between the engine and the web processes (orders.streams.relay): one message
per batch on the way (one ZeroMQ frame, one Redis PUBLISH), fanned out by the web
process into its channel layer with every group's messages in the engine's order."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from typing import Any

import pytest
import redis
import zmq
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections
from prometheus_client import REGISTRY

from core import logging as core_logging
from orders.streams import relay
from orders.streams.relay import Message, relay_listen, relay_publisher_start, relay_redis_channel, relay_send
from tests import environment

BATCHES = 40
PER_BATCH = 30
GROUPS = ("book.ETH-USDT", "trades.ETH-USDT", "user.7")


def _batches() -> list[list[Message]]:
    """Messages of three groups interleaved within and across batches, each numbered."""
    return [
        [(GROUPS[i % 3], {"type": "stream.data", "channel": GROUPS[i % 3], "data": [b, i]}) for i in range(PER_BATCH)]
        for b in range(BATCHES)
    ]


def _frames_counter(relay: str) -> tuple[threading.Event, list[bytes], Any]:
    """A second subscriber that only counts what travels: what the engine sent, unsplit."""
    frames: list[bytes] = []
    ready = threading.Event()
    if relay == "zmq":
        socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(settings.STREAMS_ZMQ_ENDPOINTS)
        ready.set()
        return ready, frames, lambda: frames.append(socket.recv()) if socket.poll(100) else None
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(relay_redis_channel(client))
    deadline = time.monotonic() + 10
    while (confirmation := pubsub.get_message(timeout=0.1)) is None or confirmation["type"] != "subscribe":
        assert time.monotonic() < deadline, "no confirmation of the counter's subscription"
    ready.set()  # subscribed on the server: it hears every batch published from now on

    def read() -> None:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == "message":
            frames.append(message["data"])

    return ready, frames, read


@pytest.mark.parametrize("relay", ["zmq", "redis"])
def test_a_batch_travels_as_one_message_and_each_group_gets_its_messages_in_order(relay, settings, tmp_path):
    if relay == "redis":
        environment.require(settings.REDIS_URL.startswith("redis://"), "the Redis relay needs REDIS_URL=redis://...")
    settings.STREAMS_RELAY = relay
    settings.STREAMS_ZMQ_ENDPOINTS = f"ipc://{tmp_path}/streams.sock"
    settings.STREAMS_ZMQ_BIND = ""
    relay_publisher_start(fresh=True)
    batches = _batches()
    ready, frames, read = _frames_counter(relay)

    delivered = threading.Event()

    def count() -> None:
        # Reads until every frame is in, or for a grace period once the web subscriber has had
        # them all: a slow, loaded machine delays the scenario, it does not lose a frame.
        grace_ends: float | None = None
        while len(frames) < BATCHES:
            if grace_ends is None and delivered.is_set():
                grace_ends = time.monotonic() + 10
            if grace_ends is not None and time.monotonic() > grace_ends:
                return
            read()

    counter = threading.Thread(target=count, daemon=True)
    counter.start()

    async def scenario() -> dict[str, list[Any]]:
        layer = get_channel_layer()
        members = {group: await layer.new_channel() for group in GROUPS}
        for group, channel in members.items():
            await layer.group_add(group, channel)
        await relay_listen()  # the web process's subscriber, subscribed on return
        ready.wait(2)
        engine = threading.Thread(target=lambda: [relay_send(batch) for batch in batches])
        engine.start()
        received: dict[str, list[Any]] = {group: [] for group in GROUPS}
        for group, channel in members.items():
            for _ in range(BATCHES * PER_BATCH // len(GROUPS)):
                message = await asyncio.wait_for(layer.receive(channel), timeout=10)
                received[group].append(message["data"])
        await asyncio.to_thread(engine.join)
        return received

    try:
        received = async_to_sync(scenario)()
    finally:
        delivered.set()
    counter.join(timeout=30)
    for group in GROUPS:
        expected = [[b, i] for b in range(BATCHES) for i in range(PER_BATCH) if GROUPS[i % 3] == group]
        assert received[group] == expected
    assert len(frames) == BATCHES  # one message per batch on the way
    sent = [json.loads(frame) for frame in frames]
    assert [[group for group, _ in frame["messages"]] for frame in sent] == [
        [group for group, _ in batch] for batch in batches
    ]
    # numbered one after the other by the sending process: a receiver can tell a lost one
    assert len({frame["source"] for frame in sent}) == 1
    assert [b["number"] - a["number"] for a, b in itertools.pairwise(sent)] == [1] * (BATCHES - 1)


def test_a_relay_that_refuses_is_counted_per_batch_and_logged_once_in_a_while(settings, caplog, monkeypatch):
    """Redis down: a few hundred batches a second fail to publish. Each is counted; the log
    has one error line (with the traceback) per interval, saying how many, not one each."""
    settings.STREAMS_RELAY = "redis"
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    monkeypatch.setattr(relay, "_redis", None)
    relay.UNPUBLISHED_LINES.reset()
    before = _unpublished_total()
    with caplog.at_level("ERROR", logger="orders.streams"):
        for _ in range(50):
            relay_send([("trades.ETH-USDT", {"type": "stream.data"})])
        later = time.monotonic() + relay.UNPUBLISHED_LOG_EVERY_SECONDS
        monkeypatch.setattr(core_logging.time, "monotonic", lambda: later)  # the interval passed
        for _ in range(7):
            relay_send([("trades.ETH-USDT", {"type": "stream.data"})])

    assert _unpublished_total() - before == 57
    lines = [r for r in caplog.records if r.name == "orders.streams"]
    assert [r.getMessage().split(":")[1].split(" batch")[0].strip() for r in lines] == ["1", "50"]
    assert all(r.exc_info is not None for r in lines)


def test_two_platforms_on_one_redis_database_hear_only_their_own_batches(settings, tmp_path, monkeypatch):
    """Pub/sub ignores Redis's databases: a platform with another database (another test
    worker's, a second platform on the server) publishes on a channel of its own."""
    environment.require(settings.REDIS_URL.startswith("redis://"), "the Redis relay needs REDIS_URL=redis://...")
    settings.STREAMS_RELAY = "redis"
    client = redis.Redis.from_url(settings.REDIS_URL)
    ours = relay_redis_channel(client)
    monkeypatch.setitem(connections["default"].settings_dict, "NAME", f"{tmp_path}/another.sqlite3")
    theirs = relay_redis_channel(client)
    monkeypatch.undo()
    assert relay_redis_channel(client) == ours != theirs  # every process of a platform agrees

    async def scenario() -> list[Any]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(GROUPS[0], channel)
        await relay_listen()
        message = {"type": "x", "data": "theirs"}
        other = {"source": "another", "number": 1, "shard": "", "messages": [[GROUPS[0], message]]}
        await asyncio.to_thread(client.publish, theirs, json.dumps(other))
        await asyncio.to_thread(relay_send, [(GROUPS[0], {"type": "x", "data": "ours"})])
        first = await asyncio.wait_for(layer.receive(channel), timeout=10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(channel), timeout=0.5)
        return [first["data"]]

    assert async_to_sync(scenario)() == ["ours"]


def test_processes_reaching_the_database_by_other_addresses_share_the_channel(settings, monkeypatch):
    """An engine that reaches the database by another host or port than the web (a pooler
    between one of them and PostgreSQL, `localhost` here and `127.0.0.1` there) published on
    a channel the web processes did not listen to: the streams were silent."""
    client = redis.Redis.from_url("redis://127.0.0.1:6379/3")  # never connected: the channel's name only
    web = relay_redis_channel(client)
    monkeypatch.setitem(connections["default"].settings_dict, "HOST", "db.example.internal")
    monkeypatch.setitem(connections["default"].settings_dict, "PORT", "6432")
    assert relay_redis_channel(client) == web


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unpublished_total() -> float:
    return REGISTRY.get_sample_value("platform_stream_batches_unpublished_total") or 0.0
