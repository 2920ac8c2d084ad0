"""Helpers of the stream tests: a WebSocket client on the ASGI application, reading
messages per channel, and a local copy of the book that applies snapshot and updates."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from channels.testing.websocket import WebsocketCommunicator

from config.asgi import application


class StreamClient:
    """One connection; `data[channel]` are the data messages received, in order."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.data: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.ops: list[dict[str, Any]] = []

    async def send(self, message: Any) -> None:
        await self.ws.send_json_to(message)

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        message: dict[str, Any] = await self.ws.receive_json_from(timeout=timeout)
        if "channel" in message:
            self.data[message["channel"]].append(message)
        else:
            self.ops.append(message)
        return message

    async def op(self, timeout: float = 5) -> dict[str, Any]:
        """The next control message (pong, subscribed, error); data met meanwhile is kept."""
        while True:
            message = await self.receive(timeout)
            if "op" in message:
                return message

    async def until(self, channel: str, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        while len(self.data[channel]) < count:
            await self.receive(timeout)
        return self.data[channel]

    async def close(self) -> None:
        await self.ws.disconnect()


async def stream_connect(
    headers: list[tuple[bytes, bytes]] | None = None, *, client: tuple[str, int] | None = None
) -> StreamClient:
    """A connection; `client`: the peer's address and port as the ASGI server says them."""
    communicator = WebsocketCommunicator(application, "/ws/v1", headers=headers or [])
    if client is not None:
        communicator.scope["client"] = client  # the consumer reads its scope when it connects
    connected, _ = await communicator.connect()
    assert connected
    return StreamClient(communicator)


class LocalBook:
    """A client's book: the snapshot, then each update's levels (quantity 0 removes) with
    their order counts (`orders`)."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[Decimal, tuple[str, str, int]]] = {"bids": {}, "asks": {}}

    def apply(self, message: dict[str, Any]) -> None:
        data = message["data"]
        if message["type"] == "snapshot":
            self.sides = {
                key: {Decimal(level["price"]): (level["price"], level["quantity"], level["orders"]) for level in levels}
                for key, levels in ((k, data[k]) for k in ("bids", "asks"))
            }
            return
        assert set(data) == {"bids", "asks", "orders"}
        for key in ("bids", "asks"):
            # The contract's [price, quantity] (two elements exactly); the order counts beside
            # them, in the same positions.
            assert len(data["orders"][key]) == len(data[key])
            for (price, quantity), orders in zip(data[key], data["orders"][key], strict=True):
                if Decimal(quantity) == 0:
                    assert quantity == "0" and orders == 0  # the contract's removal mark
                    self.sides[key].pop(Decimal(price), None)
                else:
                    self.sides[key][Decimal(price)] = (price, quantity, orders)

    def as_rest(self) -> dict[str, list[dict[str, Any]]]:
        """In GET .../book's shape: best first."""
        return {
            key: [
                {"price": p, "quantity": q, "orders": n}
                for p, q, n in (levels[k] for k in sorted(levels, reverse=key == "bids"))
            ]
            for key, levels in self.sides.items()
        }


def sequences_contiguous(messages: list[dict[str, Any]]) -> bool:
    return [m["sequence"] for m in messages] == list(range(1, len(messages) + 1))
