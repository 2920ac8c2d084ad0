"""The book stream against the REST book: snapshot plus updates equal GET .../book after
every command of a random order stream; sequences have no gaps under load; a lost update
is noticed and answered with a fresh snapshot."""

from __future__ import annotations

import contextlib
import random
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from core.errors import ApplicationError
from orders.models import Order, Trade
from orders.selectors.tickers import TICKER_WINDOW
from orders.services.orders import order_cancel
from orders.streams import consumers, publish
from orders.streams.publish import EPOCH, book_event
from tests.factories import UserFactory, fund, market_create
from tests.orders.streams.support import LocalBook, sequences_contiguous, stream_connect
from tests.orders.support import fund_house, place

pytestmark = pytest.mark.django_db(transaction=True)
BOOK = "book:ETH-USDT"


def _rest_book() -> dict[str, Any]:
    body = APIClient().get("/api/markets/ETH-USDT/book?depth=500").json()
    return {"bids": body["bids"], "asks": body["asks"]}


def _traders(count: int) -> list[Any]:
    traders = [UserFactory() for _ in range(count)]
    for trader in traders:
        fund(trader, "USDT", "10000000")
        fund(trader, "ETH", "10000")
    return traders


def _random_command(rng: random.Random, traders: list[Any]) -> None:
    """A limit order around 2000, sometimes IOC/FOK, a market order or a cancel."""
    user = rng.choice(traders)
    roll = rng.random()
    try:
        if roll < 0.15:
            live = list(
                Order.objects.filter(user=user, status__in=["open", "partially_filled"]).values_list("pk", flat=True)
            )
            if live:
                order_cancel(user=user, order_id=rng.choice(live))
                return
        side = rng.choice(["buy", "sell"])
        quantity = f"{rng.randint(1, 40) / 10:.1f}"
        if roll < 0.25:
            place(user, side=side, type="market", quantity=quantity)
            return
        price = f"{Decimal(2000) + Decimal(rng.randint(-12, 12)) / 2:.2f}"
        tif = rng.choice(["GTC", "GTC", "GTC", "IOC", "FOK"])
        place(user, side=side, type="limit", quantity=quantity, price=price, time_in_force=tif)
    except ApplicationError:
        pass  # a refusal changes nothing, and the book stream says nothing


@pytest.mark.parametrize("seed", [1, 2])
def test_snapshot_plus_updates_equal_the_rest_book_after_every_command(seed):
    market = market_create("ETH-USDT")
    fund_house(market, base="5", quote="10000")
    rng = random.Random(seed)
    traders = _traders(4)
    for _ in range(10):  # a book before the subscription: the snapshot is not empty
        _random_command(rng, traders)

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": [BOOK]})
        local = LocalBook()
        local.apply((await client.until(BOOK, 1))[0])
        assert local.as_rest() == await sync_to_async(_rest_book)()
        for step in range(120):
            await sync_to_async(_random_command)(rng, traders)
            expected = await sync_to_async(_rest_book)()
            # Every command is one batch: at most one update, and it gives the REST book.
            seen = len(client.data[BOOK])
            if local.as_rest() != expected:
                message = (await client.until(BOOK, seen + 1))[-1]
                assert message["type"] == "update"
                local.apply(message)
                assert local.as_rest() == expected, f"step {step}"
        await client.send({"op": "ping"})
        await client.op()
        for message in client.data[BOOK][seen:]:  # anything after the last step changes nothing
            local.apply(message)
        assert local.as_rest() == await sync_to_async(_rest_book)()
        assert sequences_contiguous(client.data[BOOK])
        assert len(client.data[BOOK]) > 30  # the stream did carry the changes
        await client.close()

    async_to_sync(scenario)()


def test_sequences_have_no_gaps_under_load_and_every_trade_arrives(on_postgres):
    """240 crossing orders (four threads at once on PostgreSQL; one on SQLite, whose
    in-memory test database refuses concurrent writers) while two clients listen."""
    market = market_create("ETH-USDT")
    fund_house(market, base="5", quote="10000")
    traders = _traders(4)
    channels = [BOOK, "trades:ETH-USDT", "ticker:ETH-USDT", "candles:ETH-USDT:1m"]

    def load(indexes: list[int]) -> None:
        for index in indexes:
            rng = random.Random(index)
            for _ in range(60):
                price = f"{Decimal(2000) + Decimal(rng.randint(-4, 4)) / 2:.2f}"
                with contextlib.suppress(ApplicationError):
                    place(
                        traders[index],
                        side="buy" if index % 2 else "sell",
                        type="limit",
                        quantity=f"{rng.randint(1, 9) / 10:.1f}",
                        price=price,
                    )
            connection.close()  # this thread's own connection

    async def scenario() -> None:
        clients = [await stream_connect() for _ in range(2)]
        for client in clients:
            await client.send({"op": "subscribe", "channels": channels})
            await client.op()
            for channel in channels:  # every snapshot read before the load starts (SQLite: one writer)
                await client.until(channel, 1)
        parts = [[0], [1], [2], [3]] if on_postgres else [[0, 1, 2, 3]]
        threads = [threading.Thread(target=load, args=(part,)) for part in parts]

        def run() -> None:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        await sync_to_async(run, thread_sensitive=False)()
        trades = await sync_to_async(Trade.objects.count)()
        assert trades > 20
        expected = await sync_to_async(_rest_book)()
        for client in clients:
            await client.until("trades:ETH-USDT", trades + 1, timeout=10)  # the snapshot, then each trade
            while True:  # until every book update arrived
                local = LocalBook()
                for message in client.data[BOOK]:
                    local.apply(message)
                if local.as_rest() == expected:
                    break
                await client.receive(timeout=5)
            for channel in channels:
                assert sequences_contiguous(client.data[channel]), channel
            ids = [int(m["data"]["id"]) for m in client.data["trades:ETH-USDT"][1:]]
            assert sorted(ids) == ids and len(set(ids)) == trades
            await client.close()

    async_to_sync(scenario)()


def test_a_lost_update_is_answered_with_a_fresh_snapshot():
    market_create("ETH-USDT")
    (alice,) = _traders(1)

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": [BOOK]})
        snapshot = (await client.until(BOOK, 1))[0]
        assert snapshot["data"] == {"symbol": "ETH-USDT", "bids": [], "asks": []}
        await sync_to_async(place)(alice, side="buy", type="limit", quantity="1", price="1999.00")
        update = (await client.until(BOOK, 2))[1]
        assert update["type"] == "update" and update["data"] == {
            "bids": [["1999.00000000", "1.00000000"]],
            "asks": [],
            "orders": {"bids": [1], "asks": []},
        }
        # An update numbered two ahead: one was lost between the engine and this process.
        layer = get_channel_layer()
        empty = {"bids": [], "asks": [], "orders": {"bids": [], "asks": []}}
        lost = {"type": "stream.book", "channel": BOOK, "epoch": EPOCH, "data": empty}
        number = (await sync_to_async(_book_event)()) + 2
        await layer.group_send("book.ETH-USDT", {**lost, "event": number})
        fresh = (await client.until(BOOK, 3))[2]
        assert fresh["type"] == "snapshot" and fresh["sequence"] == 3
        assert fresh["data"]["bids"] == [{"price": "1999.00000000", "quantity": "1.00000000", "orders": 1}]
        # Another engine (a restart): a fresh snapshot too.
        await layer.group_send("book.ETH-USDT", {**lost, "event": 1, "epoch": "another"})
        assert (await client.until(BOOK, 4))[3]["type"] == "snapshot"
        await client.close()

    async_to_sync(scenario)()


def _book_event() -> int:
    return book_event(Order.objects.get().market_id)


def test_ticker_and_candle_updates_equal_what_a_fresh_snapshot_reads_from_the_database():
    """Updates come from memory (orders.streams.marketdata), snapshots from the database."""
    market = market_create("ETH-USDT")
    fund_house(market, base="5", quote="10000")
    traders = _traders(3)
    rng = random.Random(7)
    for _ in range(15):  # trades before the engine's first publication: the seed
        _random_command(rng, traders)
    channels = ["ticker:ETH-USDT", *(f"candles:ETH-USDT:{i}" for i in ("1m", "1h", "1d"))]

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": channels})
        for channel in channels:
            await client.until(channel, 1)
        for _ in range(40):
            await sync_to_async(_random_command)(rng, traders)
        trades = await sync_to_async(Trade.objects.count)()
        assert trades > 15
        fresh = await stream_connect()
        await fresh.send({"op": "subscribe", "channels": channels})
        for channel in channels:
            snapshot = (await fresh.until(channel, 1))[0]["data"]
            expected = snapshot if channel.startswith("ticker") else snapshot[-1]
            while client.data[channel][-1]["data"] != expected:  # a timeout here fails the test
                await client.receive(timeout=3)
            assert client.data[channel][-1]["type"] == "update", channel
            assert sequences_contiguous(client.data[channel])
        await client.close()
        await fresh.close()

    async_to_sync(scenario)()


def _trade_at(seller: Any, buyer: Any, price: str) -> None:
    place(seller, side="sell", type="limit", quantity="0.1", price=price)
    place(buyer, side="buy", type="limit", quantity="0.1", price=price, time_in_force="IOC")


def test_a_tickers_snapshot_asks_the_engine_for_the_top_of_the_book_only():
    """A ticker's snapshot needs the best bid and ask and the book's position: it asked the
    engine for the whole book (a deep market's levels built on the engine's thread for each
    ticker subscription, and for all of them again after a relay's gap)."""
    market_create("ETH-USDT")
    seller, buyer = _traders(2)
    for offset in range(5):
        place(buyer, side="buy", type="limit", quantity="0.1", price=f"{1990 - offset}.00")
        place(seller, side="sell", type="limit", quantity="0.2", price=f"{2010 + offset}.00")
    place(seller, side="sell", type="limit", quantity="0.3", price="2010.00")
    asked: list[dict[str, Any]] = []
    answers: dict[bool, dict[str, Any]] = {}
    call = consumers.engine_call

    def recorded(command: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        answer = call(command, **kwargs)
        asked.append({**command, "levels": len(answer["book"]["bids"]) + len(answer["book"]["asks"])})
        answers[bool(command.get("top"))] = answer["book"]
        return answer

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": ["ticker:ETH-USDT", BOOK]})
        assert (await client.op())["op"] == "subscribed"
        (ticker,) = await client.until("ticker:ETH-USDT", 1)
        (book,) = await client.until(BOOK, 1)
        assert (ticker["data"]["best_bid"], ticker["data"]["best_ask"]) == ("1990.00000000", "2010.00000000")
        assert len(book["data"]["bids"]) == len(book["data"]["asks"]) == 5
        await client.close()

    with mock.patch.object(consumers, "engine_call", side_effect=recorded):
        async_to_sync(scenario)()
    assert sorted((command.get("top", False), command["levels"]) for command in asked) == [(False, 10), (True, 2)]
    for side in ("bids", "asks"):  # the best level, as the whole book's first
        assert answers[True][side] == answers[False][side][:1], side
    assert answers[True]["asks"][0] == {"price": "2010.00000000", "quantity": "0.50000000", "orders": 2}
    top = publish.book_snapshot(None, top=True)
    assert top["status"] == 404  # an unknown market, as the whole book's


def test_an_update_published_before_the_snapshot_never_moves_the_ticker_or_a_candle_back():
    """A subscription's group is joined before its snapshot is read: the ticker and candle
    updates of batches committed before that read can come after the snapshot. They were sent,
    and the client's ticker and candle went back to an older last price, volume and close."""
    market_create("ETH-USDT")
    seller, buyer = _traders(2)
    channels = ["ticker:ETH-USDT", "candles:ETH-USDT:1m", "candles:ETH-USDT:1d"]
    published: list[list[tuple[str, dict[str, Any]]]] = []
    relay = publish.relay_send
    with mock.patch.object(publish, "relay_send", side_effect=lambda batch: (published.append(batch), relay(batch))):
        _trade_at(seller, buyer, "2000.00")
    stale = [(group, message) for batch in published for group, message in batch if message["channel"] in channels]
    assert {message["channel"] for _, message in stale} == set(channels)
    _trade_at(seller, buyer, "2100.00")  # committed before the snapshot is read

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": channels})
        assert (await client.op())["op"] == "subscribed"
        layer = get_channel_layer()
        for group, message in stale:  # still queued when the snapshot is sent
            await layer.group_send(group, message)
        for channel in channels:
            await client.until(channel, 1)
        await sync_to_async(_trade_at)(seller, buyer, "2200.00")
        ticker = await client.until("ticker:ETH-USDT", 2)
        while ticker[-1]["data"]["last_price"] != "2200.00000000":  # a timeout here fails the test
            await client.receive(timeout=3)
        # The 2200 ask resting first (a book update, the last price still 2100), then the trade.
        # Before the fix: the snapshot's 2100, then the stale updates' None (the ask resting
        # before any trade) and 2000.
        prices = [m["data"]["last_price"] for m in ticker]
        volumes = [Decimal(m["data"]["volume_24h"]) for m in ticker]
        assert prices == sorted(prices, key=lambda p: Decimal(p or 0)) and prices[0] == "2100.00000000", prices
        assert volumes == sorted(volumes) and volumes[0] == Decimal("0.2"), volumes
        for channel in channels[1:]:
            candles = await client.until(channel, 2)
            assert candles[0]["data"][-1]["close"] == "2100.00000000", channel
            assert [m["data"]["close"] for m in candles[1:]] == ["2200.00000000"], channel
        await client.close()

    async_to_sync(scenario)()


def test_a_quiet_markets_ticker_follows_its_window_as_trades_leave_it(monkeypatch):
    """The ticker counts the last 24 hours: a trade leaves it a day after it was made, batch
    or no batch. The stream sent a ticker only after a batch in its market, and a quiet
    market's kept the trades GET .../ticker no longer counted (another volume, open and
    change) until its next trade, hours later maybe."""
    monkeypatch.setattr(consumers, "TICKER_REFRESH_MIN_SECONDS", 0.2, raising=False)  # the test is short
    market_create("ETH-USDT")
    seller, buyer = _traders(2)
    _trade_at(seller, buyer, "2000.00")
    _trade_at(seller, buyer, "2100.00")
    oldest = Trade.objects.order_by("id").first()
    assert oldest is not None
    leaves = timezone.now() + timedelta(seconds=5)  # the oldest trade leaves the window then
    Trade.objects.filter(pk=oldest.pk).update(executed_at=leaves - TICKER_WINDOW)

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": ["ticker:ETH-USDT"]})
        (snapshot,) = await client.until("ticker:ETH-USDT", 1)
        assert (snapshot["data"]["volume_24h"], snapshot["data"]["open_24h"]) == ("0.20000000", "2000.00000000")
        update = (await client.until("ticker:ETH-USDT", 2, timeout=15))[1]  # no batch meanwhile
        rest = await sync_to_async(lambda: APIClient().get("/api/markets/ETH-USDT/ticker").json())()
        assert update["type"] == "update" and update["data"] == rest
        assert (rest["volume_24h"], rest["open_24h"]) == ("0.10000000", "2100.00000000")
        await client.close()

    async_to_sync(scenario)()
