"""The streams' channel layer (orders.streams.layer) when the web host's wall clock steps:
a message's time to wait is measured on the monotonic clock. Queued with its wall-clock
expiry, every message waiting when the clock stepped forward past `expiry` (NTP, a VM
resumed) was counted lost, and each subscriber was sent fresh snapshots of everything."""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync

from orders.streams.layer import LOST, StreamChannelLayer


def test_a_wall_clock_step_forward_loses_no_queued_message(monkeypatch):
    layer = StreamChannelLayer(expiry=60, capacity=10)

    async def scenario() -> dict:
        channel = await layer.new_channel()
        await layer.group_add("orders.1", channel)
        await layer.group_send("orders.1", {"type": "stream.update", "channel": "orders"})
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 120)  # stepped two minutes forward
        return await layer.receive(channel)

    received = async_to_sync(scenario)()
    assert received["type"] != LOST, received
    assert received == {"type": "stream.update", "channel": "orders"}


def test_a_message_that_waited_past_expiry_is_still_counted_lost(monkeypatch):
    layer = StreamChannelLayer(expiry=60, capacity=10)

    async def scenario() -> dict:
        channel = await layer.new_channel()
        await layer.group_add("orders.1", channel)
        await layer.group_send("orders.1", {"type": "stream.update", "channel": "orders"})
        real = time.monotonic
        monkeypatch.setattr(time, "monotonic", lambda: real() + 61)  # it waited 61 s
        return await layer.receive(channel)

    assert async_to_sync(scenario)() == {"type": LOST, "lost": {"orders": 1}}
