"""Each web process's channel layer for the streams (docs/streams.md, "Slow consumers"):
Channels' in-memory layer, except that it never loses a message silently.

The in-memory layer drops what it cannot deliver without a word: a message for a consumer
whose queue is full (`capacity`) is discarded by `group_send`, a message that waited more
than `expiry` seconds is discarded and its consumer is removed from every group it joined,
and every membership ends `group_expiry` (a day) after it began. A consumer then keeps
numbering what it still receives without a gap, so its client cannot tell: a cancel-all of
1,200 orders reached a subscriber of `orders` as 1,000 updates numbered 2 to 1,001.

Here each loss is counted per consumer and per stream channel (the message's `channel`),
memberships last as long as the connection (the consumer leaves its groups when it
disconnects), and the consumer's next `receive` answers `{"type": "stream.lost", "lost":
{channel: count}}` before any later message, so that it numbers the lost messages (the
client sees the gap) and sends a fresh snapshot of each channel concerned.

A batch lost before it reached this process (orders.streams.relay numbers them) is told to
every member as `{"type": "stream.gap"}` ahead of the next batch's messages (or, its queue
full, counted as lost on every channel, `ANY_CHANNEL`): which channels it concerned is not
known, so the consumer numbers one lost message on each and sends fresh snapshots."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from copy import deepcopy
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

LOST = "stream.lost"
GAP = "stream.gap"
ANY_CHANNEL = "*"  # a loss of which the channels are unknown: every channel of the consumer


class StreamChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lost: dict[str, Counter[str]] = {}

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """As the in-memory layer's, the message's expiry on the monotonic clock: on the
        wall clock, every message waiting when it stepped forward past `expiry` (NTP, a VM
        resumed) was counted lost, and its subscribers sent fresh snapshots of everything."""
        self.require_valid_channel_name(channel)
        queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        try:
            queue.put_nowait((time.monotonic() + self.expiry, deepcopy(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    def _lose(self, channel: str, message: dict[str, Any]) -> None:
        self.lost.setdefault(channel, Counter())[str(message.get("channel", ""))] += 1

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):
            try:
                await self.send(channel, message)
            except ChannelFull:
                self._lose(channel, message)

    async def gap(self) -> None:
        """Messages were lost before they reached this layer: every member is told, before
        anything sent after this call (a full queue counts the notice as a loss of its own)."""
        for channel in {member for members in self.groups.values() for member in members}:
            notice = {"type": GAP, "channel": ANY_CHANNEL}
            try:
                await self.send(channel, notice)
            except ChannelFull:
                self._lose(channel, notice)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        if channel in self.lost and not any(channel in members for members in self.groups.values()):
            del self.lost[channel]  # left every group (disconnected): nobody to tell

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        lost = self.lost.pop(channel, None)
        if lost:
            return {"type": LOST, "lost": dict(lost)}
        queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return dict(message)

    def _clean_expired(self) -> None:
        """Messages that waited longer than `expiry` are counted as lost (those of a
        consumer that left every group are simply dropped); nobody leaves a group but by
        unsubscribing or disconnecting (group_discard). A queue is never taken away from a
        consumer that may be waiting on it (its own `receive` drops it once empty)."""
        now = time.monotonic()  # as `send` stamps them
        for channel, queue in list(self.channels.items()):
            if queue.empty() or queue._queue[0][0] >= now:
                continue
            member = any(channel in members for members in self.groups.values())
            while not queue.empty() and queue._queue[0][0] < now:
                message = queue.get_nowait()[1]
                if member:
                    self._lose(channel, message)
            if not member and queue.empty():
                self.channels.pop(channel, None)
