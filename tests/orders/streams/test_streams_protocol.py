"""The stream protocol: ping, errors that keep the connection, authentication and the
private channels (contract: shared/spec/api.md, "Streams (v1.1)")."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from config.asgi import application
from orders.models import Trade
from orders.streams import consumers
from orders.streams.consumers import client_address
from orders.streams.publish import USER_FIELD, user_group
from tests.factories import UserFactory, fund, market_create
from tests.orders.streams.support import stream_connect
from tests.orders.support import place

pytestmark = pytest.mark.django_db(transaction=True)


def _token(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


def _session_cookie(user) -> bytes:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.save()
    return f"sessionid={session.session_key}".encode()


def _rest_views(user, order_id: str) -> dict[str, object]:
    api = APIClient()
    api.force_authenticate(user)
    return {
        "fill": api.get("/api/trades").json()["results"][0],
        "trade": api.get("/api/markets/ETH-USDT/trades").json()[0],
        "order": api.get(f"/api/orders/{order_id}").json(),
    }


def test_malformed_messages_answer_an_error_and_keep_the_connection():
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await stream_connect()
        too_deep = "[" * 30_000 + "]" * 30_000  # deeper than the JSON parser recurses, within a frame
        for raw in ["not json", "[1, 2]", '{"no": "op"}', '{"op": 5}', '{"op": "dance"}', too_deep]:
            await client.ws.send_to(text_data=raw)
            answer = await client.op()
            assert answer["op"] == "error" and answer["code"] == "malformed_message", raw
        await client.ws.send_to(bytes_data=b"\x00\x01")
        assert (await client.op())["code"] == "malformed_message"
        bad_subscriptions = [
            {"op": "subscribe"},
            {"op": "subscribe", "channels": "book:ETH-USDT"},
            {"op": "subscribe", "channels": [1]},
        ]
        for bad in bad_subscriptions:
            await client.send(bad)
            assert (await client.op())["code"] == "malformed_message"
        await client.send({"op": "subscribe", "channels": [f"trades:{i}" for i in range(51)]})
        assert (await client.op())["code"] == "malformed_message"
        await client.send({"op": "auth", "token": 12})
        assert (await client.op())["code"] == "malformed_message"
        await client.send({"op": "ping"})
        assert await client.op() == {"op": "pong"}
        await client.close()

    async_to_sync(scenario)()


def test_unknown_channels_and_markets_are_refused_per_channel():
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await stream_connect()
        await client.send(
            {
                "op": "subscribe",
                "channels": ["nope:ETH-USDT", "book:DOGE-USDT", "candles:ETH-USDT:7m", "book", "trades:ETH-USDT"],
            }
        )
        codes = [(await client.op())["code"] for _ in range(4)]
        assert codes == ["unknown_channel", "market_not_found", "unknown_channel", "unknown_channel"]
        assert await client.op() == {"op": "subscribed", "channels": ["trades:ETH-USDT"]}
        snapshot = (await client.until("trades:ETH-USDT", 1))[0]
        assert snapshot == {"channel": "trades:ETH-USDT", "type": "snapshot", "sequence": 1, "data": []}
        await client.send({"op": "ping"})
        assert await client.op() == {"op": "pong"}
        await client.close()

    async_to_sync(scenario)()


def test_an_error_about_a_channel_names_it(monkeypatch):
    """A bot subscribed to several channels could not tell which one an error was about:
    two books whose snapshot the engine did not answer came back as two identical
    `service_unavailable` errors after `subscribed` had named both, and both subscriptions
    were dropped without a word saying which. Each error about a channel names it now."""
    market_create("ETH-USDT")
    market_create("BTC-USDT")
    unavailable = {"code": "service_unavailable", "message": "The matching engine is not available; please retry."}
    real_engine_call = consumers.engine_call

    def engine_call(command, *, market=None):
        return {"error": unavailable} if market == "BTC-USDT" else real_engine_call(command, market=market)

    monkeypatch.setattr(consumers, "engine_call", engine_call)

    async def scenario() -> None:
        client = await stream_connect()
        names = ["book:DOGE-USDT", "nope:ETH-USDT", "book:BTC-USDT", "orders", "book:ETH-USDT"]
        await client.send({"op": "subscribe", "channels": names})
        refused = [await client.op() for _ in range(3)]
        assert [(m["code"], m["channels"]) for m in refused] == [
            ("market_not_found", ["book:DOGE-USDT"]),
            ("unknown_channel", ["nope:ETH-USDT"]),
            ("auth_required", ["orders"]),
        ]
        assert await client.op() == {"op": "subscribed", "channels": ["book:BTC-USDT", "book:ETH-USDT"]}
        assert await client.op() == {"op": "error", **unavailable, "channels": ["book:BTC-USDT"]}
        assert (await client.until("book:ETH-USDT", 1))[0]["type"] == "snapshot"
        # An error about no channel in particular names none.
        await client.send({"op": "dance"})
        assert "channels" not in await client.op()
        await client.close()

    async_to_sync(scenario)()


def test_a_public_channel_with_a_trailing_part_is_unknown():
    """Was accepted: `trades:ETH-USDT:` answered `subscribed` and a snapshot, then never an
    update (its group, `trades.ETH-USDT.`, is not one the engine publishes to); likewise
    `book:`, `ticker:` and `candles:` names with an extra part."""
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await stream_connect()
        names = ["trades:ETH-USDT:", "book:ETH-USDT:", "ticker:ETH-USDT:x", "candles:ETH-USDT:1m:", "candles:ETH-USDT:"]
        await client.send({"op": "subscribe", "channels": names})
        codes = [(await client.op())["code"] for _ in names]
        assert codes == ["unknown_channel"] * len(names)
        await client.send({"op": "ping"})
        assert await client.op() == {"op": "pong"}  # nothing was subscribed in between
        await client.close()

    async_to_sync(scenario)()


def test_a_market_with_a_control_character_is_not_found_and_keeps_the_connection():
    """The market's look-up raised, and the connection closed (1011) with a traceback instead
    of answering `market_not_found`: on PostgreSQL for a NUL (DataError, "text fields cannot
    contain NUL"), on either database for a lone surrogate (`"\\ud800"` in the JSON: a
    UnicodeEncodeError). A token with one was the same crash."""
    market_create("ETH-USDT")

    async def scenario() -> None:
        client = await stream_connect()
        names = ["book:ETH-USDT\u0000", "trades:\u0000", "candles:ETH\u0000USDT:1m", "book:\ud800", "ticker:ETH-\udfff"]
        await client.ws.send_to(text_data=json.dumps({"op": "subscribe", "channels": names}))
        assert [(await client.op())["code"] for _ in names] == ["market_not_found"] * len(names)
        await client.ws.send_to(text_data=json.dumps({"op": "auth", "token": "a.\ud800.b"}))
        assert (await client.op())["code"] == "invalid_token"
        await client.send({"op": "ping"})
        assert await client.op() == {"op": "pong"}
        await client.close()

    async_to_sync(scenario)()


def test_a_private_channel_with_a_trailing_part_is_unknown():
    """Was accepted: `orders:` and `fills:` answered `subscribed` and a snapshot, then never
    an update (the user's orders and fills are delivered to `orders` and `fills`)."""
    market_create("ETH-USDT")
    token = _token(UserFactory())

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "auth", "token": token})
        names = ["orders:", "fills:", "orders:x", "fills::"]
        await client.send({"op": "subscribe", "channels": names})
        codes = [(await client.op())["code"] for _ in names]
        assert codes == ["unknown_channel"] * len(names)
        await client.send({"op": "ping"})
        assert await client.op() == {"op": "pong"}  # nothing was subscribed in between
        assert not client.data
        await client.close()

    async_to_sync(scenario)()


def test_private_channels_need_authentication_and_show_only_the_callers_data():
    market_create("ETH-USDT")
    alice, bob = UserFactory(), UserFactory()
    fund(alice, "USDT", "10000")
    fund(bob, "ETH", "5")
    alice_order = place(alice, side="buy", type="limit", quantity="1", price="1990.00")
    token = _token(alice)

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": ["orders", "fills"]})
        assert [(await client.op())["code"] for _ in range(2)] == ["auth_required", "auth_required"]
        await client.send({"op": "auth", "token": "not-a-jwt"})
        assert (await client.op())["code"] == "invalid_token"
        await client.send({"op": "subscribe", "channels": ["orders"]})
        assert (await client.op())["code"] == "auth_required"

        await client.send({"op": "auth", "token": token})
        await client.send({"op": "subscribe", "channels": ["orders", "fills", "trades:ETH-USDT"]})
        assert await client.op() == {"op": "subscribed", "channels": ["orders", "fills", "trades:ETH-USDT"]}
        orders = (await client.until("orders", 1))[0]
        assert orders["type"] == "snapshot" and [o["id"] for o in orders["data"]] == [str(alice_order.pk)]
        assert (await client.until("fills", 1))[0]["data"] == []

        # Bob's order that rests is not Alice's business; his sell that fills hers is, as her fill only.
        await sync_to_async(place)(bob, side="sell", type="limit", quantity="1", price="2050.00")
        await sync_to_async(place)(bob, side="sell", type="limit", quantity="0.4", price="1990.00")
        update = (await client.until("orders", 2))[1]
        assert update["sequence"] == 2 and update["data"]["id"] == str(alice_order.pk)
        assert update["data"]["status"] == "partially_filled" and update["data"]["filled_quantity"] == "0.40000000"
        fill = (await client.until("fills", 2))[1]
        assert fill["data"]["order_id"] == str(alice_order.pk) and fill["data"]["liquidity"] == "maker"
        assert Decimal(fill["data"]["fee"]) == Decimal("0.6368")
        # Exactly what the REST API answers: the fill, the public trade, the order.
        rest = await sync_to_async(_rest_views)(alice, str(alice_order.pk))
        assert fill["data"] == rest["fill"]
        assert (await client.until("trades:ETH-USDT", 2))[1]["data"] == rest["trade"]
        assert update["data"] == rest["order"]
        await client.send({"op": "ping"})
        assert await client.op() == {"op": "pong"}
        assert len(client.data["orders"]) == 2 and len(client.data["fills"]) == 2
        await client.close()

    async_to_sync(scenario)()


def test_a_page_session_authenticates_only_from_an_allowed_origin():
    market_create("ETH-USDT")
    alice = UserFactory()
    cookie = _session_cookie(alice)

    async def scenario() -> None:
        origins = [
            (b"http://testserver", True),
            (b"https://testserver", True),
            (b"https://evil.example", False),
            # The hosts were compared alone: another port of the same host (another
            # service's page), or another allowed host, rode the page's session.
            (b"http://testserver:8001", False),
            (b"http://localhost", False),
            (b"null", False),
            (None, False),
            # Not a URL: the handshake was a 500 (urlparse's ValueError, "Invalid IPv6 URL").
            (b"http://[", False),
            (b"http://[::1", False),
        ]
        for origin, allowed in origins:
            headers = [(b"cookie", cookie), (b"host", b"testserver")] + ([(b"origin", origin)] if origin else [])
            client = await stream_connect(headers)
            await client.send({"op": "subscribe", "channels": ["orders"]})
            answer = await client.op()
            assert answer["op"] == ("subscribed" if allowed else "error"), origin
            await client.close()

    async_to_sync(scenario)()


@pytest.mark.parametrize(
    ("overrides", "origin", "allowed"),
    [
        ({"CSRF_TRUSTED_ORIGINS": ["https://app.example"]}, b"https://app.example", True),
        ({"CSRF_TRUSTED_ORIGINS": ["https://app.example"]}, b"http://app.example", False),
        ({"CSRF_TRUSTED_ORIGINS": ["https://*.example.com"]}, b"https://desk.example.com", True),
        ({"CSRF_TRUSTED_ORIGINS": ["https://*.example.com"]}, b"https://example.org", False),
        # Secure cookies: a plain-http page on the socket's own host is a network
        # attacker's, not the platform's.
        ({"SESSION_COOKIE_SECURE": True}, b"http://testserver", False),
        ({"SESSION_COOKIE_SECURE": True}, b"https://testserver", True),
    ],
)
def test_trusted_origins_and_secure_cookies_decide_as_for_forms(settings, overrides, origin, allowed):
    market_create("ETH-USDT")
    cookie = _session_cookie(UserFactory())
    for name, value in overrides.items():
        setattr(settings, name, value)

    async def scenario() -> None:
        client = await stream_connect([(b"cookie", cookie), (b"host", b"testserver"), (b"origin", origin)])
        await client.send({"op": "subscribe", "channels": ["orders"]})
        assert (await client.op())["op"] == ("subscribed" if allowed else "error")
        await client.close()

    async_to_sync(scenario)()


THROTTLED = {"op": "error", "code": "throttled", "message": "Too many subscriptions; wait a few seconds."}


def test_subscriptions_are_throttled_per_client_address():
    """Was per connection: a bot opening more sockets got the burst and the rate once per
    socket (each snapshot a read of the engine's book); now the connections of an address
    share one budget, and other addresses have theirs."""
    market_create("ETH-USDT")

    async def scenario() -> None:
        first = await stream_connect(client=("198.51.100.7", 50001))
        second = await stream_connect(client=("198.51.100.7", 50002))
        for client in (first, second):  # 2 x 50 snapshots, one per connection: the address's burst
            await client.send({"op": "subscribe", "channels": [f"book:X{i}" for i in range(50)]})
            for _ in range(50):
                assert (await client.op())["code"] == "market_not_found"
        # 50 more at once, on either: more than 5 per second could have refilled in this test's seconds.
        for client in (first, second):
            await client.send({"op": "subscribe", "channels": ["book:ETH-USDT", *(f"trades:Y{i}" for i in range(49))]})
            assert await client.op() == THROTTLED
        # A third connection from the address starts with what is left, not a burst of its own.
        third = await stream_connect(client=("198.51.100.7", 50003))
        await third.send({"op": "subscribe", "channels": [f"trades:Z{i}" for i in range(50)]})
        assert await third.op() == THROTTLED
        # Another address is not affected.
        other = await stream_connect(client=("203.0.113.9", 50004))
        await other.send({"op": "subscribe", "channels": [f"book:W{i}" for i in range(50)]})
        for _ in range(50):
            assert (await other.op())["code"] == "market_not_found"
        await first.send({"op": "ping"})
        assert await first.op() == {"op": "pong"}
        for client in (first, second, third, other):
            await client.close()

    async_to_sync(scenario)()


def test_connections_are_capped_per_client_address(settings):
    """One client opened 400 sockets in two seconds; now an address holds at most
    STREAMS_MAX_CONNECTIONS_PER_ADDRESS in a process, the next handshake refused (1013), and
    a closed one frees its place."""
    settings.STREAMS_MAX_CONNECTIONS_PER_ADDRESS = 2
    market_create("ETH-USDT")

    async def refused(client: tuple[str, int]) -> bool:
        communicator = WebsocketCommunicator(application, "/ws/v1")
        communicator.scope["client"] = client
        connected, code = await communicator.connect()
        return not connected and code == 1013

    async def scenario() -> None:
        first = await stream_connect(client=("198.51.100.7", 50001))
        second = await stream_connect(client=("198.51.100.7", 50002))
        assert await refused(("198.51.100.7", 50003))
        other = await stream_connect(client=("203.0.113.9", 50004))  # another address has its own
        await first.close()
        third = await stream_connect(client=("198.51.100.7", 50005))  # the closed one's place
        assert await refused(("198.51.100.7", 50006))
        for client in (second, other, third):
            await client.send({"op": "ping"})
            assert await client.op() == {"op": "pong"}
            await client.close()
        again = await stream_connect(client=("198.51.100.7", 50007))  # nothing counted for ever
        await again.close()

    async_to_sync(scenario)()


def test_a_connection_that_fails_before_it_is_accepted_gives_its_place_back(settings, monkeypatch):
    settings.STREAMS_MAX_CONNECTIONS_PER_ADDRESS = 1
    market_create("ETH-USDT")

    async def relay_down() -> None:
        raise ConnectionError("relay unreachable")

    async def scenario() -> None:
        with monkeypatch.context() as patched:
            patched.setattr(consumers, "relay_listen", relay_down)
            for _ in range(2):
                communicator = WebsocketCommunicator(application, "/ws/v1")
                communicator.scope["client"] = ("198.51.100.8", 50001)
                with pytest.raises(ConnectionError):
                    await communicator.connect()
        client = await stream_connect(client=("198.51.100.8", 50002))  # the relay back: a place is free
        await client.close()

    async_to_sync(scenario)()


def test_the_fills_snapshot_is_the_callers_last_fills_newest_first_as_the_rest_list(monkeypatch):
    # The snapshot read the caller's trades without an ORDER BY: whatever order the plan
    # gave (by market, takers before makers, the table's order) and, past the limit, not
    # the last ones. A bot that seeds its fill log from it saw another list than GET /api/trades.
    monkeypatch.setattr("orders.streams.consumers.SNAPSHOT_TRADES", 3)
    market_create("ETH-USDT")
    market_create("BTC-USDT", quantity_step="0.00001", min_quantity="0.00001", reference_price="60000.00")
    alice, bob = UserFactory(), UserFactory()
    for user in (alice, bob):
        fund(user, "USDT", "1000000")
        fund(user, "ETH", "10")
        fund(user, "BTC", "1")
    # Alice alternates markets and sides of the trade (maker, then taker).
    for market, price, quantity in [("ETH-USDT", "2000.00", "0.1"), ("BTC-USDT", "60000.00", "0.001")] * 2:
        place(alice, market=market, side="sell", type="limit", quantity=quantity, price=price)
        place(bob, market=market, side="buy", type="limit", quantity=quantity, price=price)
        place(bob, market=market, side="sell", type="limit", quantity=quantity, price=price)
        place(alice, market=market, side="buy", type="limit", quantity=quantity, price=price)
    api = APIClient()
    api.force_authenticate(alice)
    rest = api.get("/api/trades?limit=3").json()["results"]
    token = _token(alice)

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "auth", "token": token})
        await client.send({"op": "subscribe", "channels": ["fills"]})
        snapshot = (await client.until("fills", 1))[0]
        assert snapshot["type"] == "snapshot"
        assert [f["trade_id"] for f in snapshot["data"]] == [f["trade_id"] for f in rest]
        assert snapshot["data"] == rest
        await client.close()

    async_to_sync(scenario)()


def test_an_order_state_is_sent_once_when_its_notices_are_read_after_later_batches():
    """Each batch that changes an order notifies its owner's connections, which read the
    order when they handle the notice: two fills of a resting order in two batches, read
    after both committed, sent `filled` twice (measured on `make run`: three traders, 50
    orders each, 20 identical order updates, one `filled` sent four times). A bot acting
    on `filled` hedged twice. A state already sent (or in the snapshot) is not sent again."""
    market_create("ETH-USDT")
    alice, bob = UserFactory(), UserFactory()
    fund(alice, "ETH", "5")
    fund(bob, "USDT", "100000")
    resting = place(alice, side="sell", type="limit", quantity="1.0", price="2001.00")
    token = _token(alice)

    def two_fills() -> None:  # two batches, committed before the consumer reads (one thread)
        place(bob, side="buy", type="limit", quantity="0.4", price="2001.00")
        place(bob, side="buy", type="limit", quantity="0.6", price="2001.00")

    async def scenario() -> list[dict[str, object]]:
        client = await stream_connect()
        await client.send({"op": "auth", "token": token})
        await client.send({"op": "subscribe", "channels": ["orders"]})
        assert await client.op() == {"op": "subscribed", "channels": ["orders"]}
        await client.until("orders", 1)
        await sync_to_async(two_fills)()
        await client.until("orders", 2)
        for _ in range(3):  # whatever else was queued comes before the pong
            await client.send({"op": "ping"})
            assert await client.op() == {"op": "pong"}
        await client.close()
        return client.data["orders"]

    messages = async_to_sync(scenario)()
    updates = [m["data"] for m in messages[1:]]
    assert [u["status"] for u in updates] == ["filled"]
    assert updates[0]["id"] == str(resting.pk)
    assert [m["sequence"] for m in messages] == [1, 2]


def _more_trades_than_a_snapshot() -> tuple[User, User, Trade, list[int]]:
    """A seller and a buyer who traded once on ETH-USDT, that trade copied past a trades
    snapshot's size: the two, the first trade, and the market's trade ids in order."""
    market = market_create("ETH-USDT")
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "5")
    fund(buyer, "USDT", "100000")
    place(seller, side="sell", type="limit", quantity="0.1", price="2000.00")
    place(buyer, side="buy", type="limit", quantity="0.1", price="2000.00", time_in_force="IOC")
    template = Trade.objects.get()
    fields = {f.attname: getattr(template, f.attname) for f in Trade._meta.concrete_fields if not f.primary_key}
    Trade.objects.bulk_create([Trade(**fields) for _ in range(consumers.SNAPSHOT_TRADES + 5)])
    ids = list(Trade.objects.filter(market=market).order_by("id").values_list("id", flat=True))
    return seller, buyer, template, ids


async def _updates_after_a_trade(client: Any, channel: str, seller: User, buyer: User) -> list[dict[str, object]]:
    """The seller and the buyer trade once more; `channel`'s messages after its snapshot, once
    that trade's came and everything sent before a ping was handled."""
    await sync_to_async(place)(seller, side="sell", type="limit", quantity="0.1", price="2000.00")
    await sync_to_async(place)(buyer, side="buy", type="limit", quantity="0.1", price="2000.00")
    await client.until(channel, 2)
    await client.send({"op": "ping"})
    assert await client.op() == {"op": "pong"}
    await client.close()
    updates: list[dict[str, object]] = client.data[channel][1:]
    return updates


def test_a_trade_older_than_the_trades_snapshot_is_not_sent_after_it():
    """The trades snapshot is the newest 50; a batch that committed more trades than that
    between the subscription's joining its group and its snapshot's read has its oldest
    trades outside the snapshot, and their messages, handled after it, were sent as
    updates: older trades after newer ones, and a bot taking the last update's price as the
    last price had an old one. A trade at or before the snapshot's newest is not sent."""
    seller, buyer, _, ids = _more_trades_than_a_snapshot()
    older = ids[1]  # outside the snapshot of the newest 50

    def message(trade_id: int) -> dict[str, object]:
        body = {"id": str(trade_id), "price": "2000.00000000", "quantity": "0.10000000", "taker_side": "buy"}
        return {"type": "stream.data", "channel": "trades:ETH-USDT", "data": {**body, "executed_at": "x"}}

    async def scenario() -> list[dict[str, object]]:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": ["trades:ETH-USDT"]})
        assert await client.op() == {"op": "subscribed", "channels": ["trades:ETH-USDT"]}
        snapshot = (await client.until("trades:ETH-USDT", 1))[0]["data"]
        assert len(snapshot) == consumers.SNAPSHOT_TRADES and str(older) not in {t["id"] for t in snapshot}
        layer = get_channel_layer()
        await layer.group_send("trades.ETH-USDT", message(older))  # as a batch's, handled late
        await layer.group_send("trades.ETH-USDT", message(ids[-1]))  # in the snapshot
        return await _updates_after_a_trade(client, "trades:ETH-USDT", seller, buyer)

    updates = async_to_sync(scenario)()
    assert [u["data"]["id"] for u in updates] == [str(Trade.objects.latest("id").pk)]


def test_a_fill_older_than_the_fills_snapshot_is_not_sent_after_it():
    """The same for a user's fills (newest 50): an older fill of a market the snapshot
    shows was sent after it. Compared per market (other engines' markets number their trades
    from the same sequence in their own order)."""
    seller, buyer, template, ids = _more_trades_than_a_snapshot()
    older = ids[1]
    token = _token(buyer)
    fill = {
        "trade_id": str(older),
        "order_id": str(template.taker_order_id),
        "market": "ETH-USDT",
        "side": "buy",
        "price": "2000.00000000",
        "quantity": "0.10000000",
        "fee": "0.00000000",
        "liquidity": "taker",
        "executed_at": "x",
    }

    async def scenario() -> list[dict[str, object]]:
        client = await stream_connect()
        await client.send({"op": "auth", "token": token})
        await client.send({"op": "subscribe", "channels": ["fills"]})
        assert await client.op() == {"op": "subscribed", "channels": ["fills"]}
        snapshot = (await client.until("fills", 1))[0]["data"]
        assert len(snapshot) == consumers.SNAPSHOT_TRADES and str(older) not in {f["trade_id"] for f in snapshot}
        message = {"type": "stream.data", "channel": "fills", "data": fill, USER_FIELD: buyer.pk}
        await get_channel_layer().group_send(user_group(buyer.pk), message)  # as a batch's, handled late
        return await _updates_after_a_trade(client, "fills", seller, buyer)

    updates = async_to_sync(scenario)()
    assert [u["data"]["trade_id"] for u in updates] == [str(Trade.objects.latest("id").pk)]


def test_orders_a_batch_changed_together_are_read_in_one_go_and_sent_in_its_order():
    """A sweep through several of a user's resting orders changes them in one batch: the
    consumer reads their bodies together (one read of the orders, their events and fills,
    whatever their number: a read per order queued every later message of the connection
    behind it under load) and numbers them in the batch's order."""
    market_create("ETH-USDT")
    alice, bob = UserFactory(), UserFactory()
    fund(alice, "ETH", "5")
    fund(bob, "USDT", "100000")
    resting = [place(alice, side="sell", type="limit", quantity="0.5", price=f"{p}.00") for p in (2001, 2002, 2003)]
    token = _token(alice)

    async def scenario() -> list[dict[str, object]]:
        client = await stream_connect()
        await client.send({"op": "auth", "token": token})
        await client.send({"op": "subscribe", "channels": ["orders"]})
        assert await client.op() == {"op": "subscribed", "channels": ["orders"]}
        await client.until("orders", 1)
        await sync_to_async(place)(bob, side="buy", type="limit", quantity="1.5", price="2003.00", time_in_force="IOC")
        updates = (await client.until("orders", 4))[1:]
        await client.close()
        return updates

    # The consumer reads in this thread (database_sync_to_async under async_to_sync).
    with CaptureQueriesContext(connection) as captured:
        updates = async_to_sync(scenario)()
    assert [(u["sequence"], u["data"]["id"], u["data"]["status"]) for u in updates] == [
        (2, str(resting[0].pk), "filled"),
        (3, str(resting[1].pk), "filled"),
        (4, str(resting[2].pk), "filled"),
    ]
    event_reads = [q["sql"] for q in captured.captured_queries if 'FROM "orders_orderevent"' in q["sql"]]
    assert len(event_reads) == 2, event_reads  # the snapshot's, the three updates'


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "address"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # not a proxy: its header proves nothing
        ("10.0.0.5", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the proxy's word, the client's part ignored
        ("10.0.0.5", "", "10.0.0.5"),
        # An IPv6 client is its /64 (one server holds all of it), directly or behind the proxy.
        ("2001:db8:1:2:aaaa::1", "", "2001:db8:1:2::"),
        ("10.0.0.5", "2001:db8:1:2:bbbb::7", "2001:db8:1:2::"),
    ],
)
def test_the_budget_is_the_client_behind_trusted_proxies(peer, forwarded_for, address, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    scope = {"client": (peer, 1234), "headers": [(b"x-forwarded-for", forwarded_for.encode())]}
    assert client_address(scope) == address
    assert client_address({"headers": []}) == "unknown"
