"""Streams through real processes, as `make run` starts them: the engine process, uvicorn
with two ASGI worker processes, SQLite and no server of any kind (the ZeroMQ relay), or
Redis (the Redis pub/sub relay, as in production). Orders go in over HTTP; two WebSocket
clients on whichever workers they land on see every book change and trade in order."""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
from decimal import Decimal
from typing import Any

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from tests import environment
from tests.orders.streams.platform import Platform
from tests.orders.streams.support import LocalBook, sequences_contiguous
from tests.waiting import wait_until

# Each test starts the platform on its own embedded SQLite (tests/orders/streams/platform.py).
pytestmark = pytest.mark.embedded

BOOK = "book:ETH-USDT"
TRADES = "trades:ETH-USDT"


class Listener:
    """A WebSocket client reading in a thread of its own."""

    def __init__(self, url: str, *, token: str) -> None:
        self.ws: ClientConnection = connect(url.replace("http", "ws") + "/ws/v1").__enter__()
        self.messages: list[dict[str, Any]] = []
        self.ws.send(json.dumps({"op": "auth", "token": token}))
        self.ws.send(json.dumps({"op": "subscribe", "channels": [BOOK, TRADES, "orders"]}))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for text in self.ws:
                self.messages.append(json.loads(text))
        except Exception:  # noqa: S110 - the connection closed at the end of the test
            pass

    def channel(self, name: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m.get("channel") == name]

    def book(self) -> dict[str, Any]:
        local = LocalBook()
        for message in self.channel(BOOK):
            local.apply(message)
        return local.as_rest()


def _place(platform: Platform, token: str, **body: Any) -> dict[str, Any]:
    answer = requests.post(
        f"{platform.url}/api/orders",
        json={"market": "ETH-USDT", **body},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code in (200, 201), answer.text
    return dict(answer.json())


@pytest.mark.parametrize("relay", ["zmq", "redis"])
def test_streams_through_the_engine_and_two_web_processes(tmp_path, relay):
    redis_url = None
    if relay == "redis":
        redis_url = os.environ.get("REDIS_URL", "")
        environment.require(redis_url.startswith("redis://"), "the Redis relay needs REDIS_URL=redis://...")
    platform = Platform(tmp_path / "var", redis_url=redis_url)
    try:
        platform.start()
        alice, bob = platform.token("alice"), platform.token("bob")
        listeners = [Listener(platform.url, token=alice) for _ in range(2)]
        for listener in listeners:
            wait_until(lambda listener=listener: listener.channel(BOOK), what="the book snapshot", timeout=10)
            assert listener.channel(BOOK)[0]["type"] == "snapshot"
            assert listener.book() == platform.rest_book()

        # Bob rests an order: both of Alice's connections see it in the book within a second.
        rested = _place(platform, bob, side="buy", type="limit", quantity="0.5", price="1990.00")
        expected = platform.rest_book()
        assert any(level["price"] == "1990.00000000" for level in expected["bids"])
        for listener in listeners:
            wait_until(lambda listener=listener: listener.book() == expected, what="Bob's bid", timeout=1)

        # Load from four threads: crossing orders of both traders.
        def trade(token: str, side: str) -> None:
            for step in range(15):
                price = f"{Decimal(2000) + Decimal(step % 5 - 2):.2f}"
                _place(platform, token, side=side, type="limit", quantity="0.1", price=price)

        threads = [
            threading.Thread(target=trade, args=(token, side))
            for token, side in ((alice, "sell"), (bob, "buy"), (alice, "buy"), (bob, "sell"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = platform.rest_book()
        trades = requests.get(f"{platform.url}/api/markets/ETH-USDT/trades?limit=500", timeout=5).json()
        assert len(trades) > 10
        for listener in listeners:
            wait_until(lambda listener=listener: listener.book() == expected, what="the final book", timeout=10)
            wait_until(
                lambda listener=listener: len(listener.channel(TRADES)) == len(trades) + 1,
                what="every trade",
                timeout=10,
            )
            for channel in (BOOK, TRADES, "orders"):
                assert sequences_contiguous(listener.channel(channel)), channel
            streamed = [m["data"]["id"] for m in listener.channel(TRADES)[1:]]
            assert sorted(streamed, key=int) == sorted((t["id"] for t in trades), key=int)
            snapshot, *updates = listener.channel("orders")
            mine = {order["id"] for order in snapshot["data"]} | {m["data"]["id"] for m in updates}
            assert len(updates) > 10
            assert str(rested["id"]) not in mine  # Bob's order is not on Alice's private channel
            listener.ws.close()
    finally:
        platform.stop()


def test_after_a_failover_the_new_leader_publishes_and_subscribers_resynchronise(tmp_path):
    """ZeroMQ relay: the standby binds the stream socket only when it takes the lead; its
    first batch is a gap for every subscriber, each then sent a fresh snapshot."""
    platform = Platform(tmp_path / "var", redis_url=None)
    try:
        platform.start()
        platform.spawn("engine-standby", sys.executable, "manage.py", "engine")
        bob = platform.token("bob")
        listener = Listener(platform.url, token=bob)
        wait_until(lambda: listener.channel(BOOK), what="the book snapshot", timeout=10)
        _place(platform, bob, side="buy", type="limit", quantity="0.1", price="1990.00")
        wait_until(lambda: listener.book() == platform.rest_book(), what="the first update", timeout=2)

        platform.processes[0].kill()  # the leader (the first engine), without any clean-up
        platform.processes[0].wait()
        standby_log = platform.var / "log" / "engine-standby.log"
        wait_until(lambda: b" leading on " in standby_log.read_bytes(), what="the standby to lead", timeout=20)

        def placed() -> bool:
            answer = requests.post(
                f"{platform.url}/api/orders",
                json={"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.2", "price": "1991.00"},
                headers={"Authorization": f"Bearer {bob}"},
                timeout=10,
            )
            return answer.status_code == 201

        wait_until(placed, what="an order placed through the new leader", timeout=20)
        expected = platform.rest_book()
        assert any(level["price"] == "1991.00000000" for level in expected["bids"])
        wait_until(lambda: listener.book() == expected, what="the book after the failover", timeout=5)
        # The new leader is a gap (what the engine before committed and had not yet published
        # is lost with it), then a fresh snapshot; one, the new epoch's too.
        messages = listener.channel(BOOK)
        kinds, sequences = [m["type"] for m in messages], [m["sequence"] for m in messages]
        gaps = [i for i, (a, b) in enumerate(itertools.pairwise(sequences)) if b != a + 1]
        assert kinds[0] == "snapshot" and kinds.count("snapshot") == 2, kinds
        assert len(gaps) == 1 and sequences[gaps[0] + 1] == sequences[gaps[0]] + 2, sequences
        assert kinds[gaps[0] + 1] == "snapshot", kinds
        listener.ws.close()
    finally:
        platform.stop()
