"""A connection's authentication does not outlive its credentials (docs/streams.md,
"Authentication"): once the access token has expired, its user is deactivated, or a page's
session ended (logout, password change), the private channels stop, the client is told,
and `orders` / `fills` need a new auth."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from rest_framework_simplejwt.tokens import AccessToken

from accounts.api_keys import request_signature
from accounts.services import api_key_create, api_key_delete
from accounts.tokens import token_pair_issue
from orders.streams import consumers, publish
from orders.streams.publish import user_group
from tests.factories import UserFactory, fund, market_create
from tests.orders.streams.support import StreamClient, stream_connect
from tests.orders.support import place

pytestmark = pytest.mark.django_db(transaction=True)


async def _rest(client: StreamClient) -> list[dict[str, Any]]:
    """Everything the server sends until its `invalid_token` error has come (30 s at most,
    however slow the loaded machine) and it falls silent."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not any(m.get("op") == "error" for m in received):
        assert time.monotonic() < deadline, received
        if not await client.ws.receive_nothing(timeout=0.1):
            received.append(await client.receive())
    while not await client.ws.receive_nothing(timeout=0.5):
        received.append(await client.receive())
    return received


def _trading_pair() -> tuple[Any, Any]:
    market_create("ETH-USDT")
    alice, bob = UserFactory(), UserFactory()
    fund(alice, "USDT", "10000")
    fund(bob, "ETH", "5")
    place(alice, side="buy", type="limit", quantity="1", price="1990.00")
    return alice, bob


async def _subscribed(token: str) -> StreamClient:
    client = await stream_connect()
    await client.send({"op": "auth", "token": token})
    await client.send({"op": "subscribe", "channels": ["orders", "fills"]})
    assert await client.op() == {"op": "subscribed", "channels": ["orders", "fills"]}
    await client.until("fills", 1)
    assert len(client.data["orders"][0]["data"]) == 1
    return client


async def _private_data_stops(client: StreamClient, bob: Any) -> None:
    # Bob's sell fills Alice's order: her order and her fill would be published to her.
    await sync_to_async(place)(bob, side="sell", type="limit", quantity="0.4", price="1990.00")
    received = await _rest(client)
    assert [m for m in received if m.get("channel") in ("orders", "fills")] == []
    errors = [m for m in received if m.get("op") == "error"]
    assert [m["code"] for m in errors] == ["invalid_token"]
    assert errors[0]["channels"] == ["orders", "fills"]  # the channels it closed
    await client.send({"op": "subscribe", "channels": ["orders"]})
    assert (await client.op())["code"] == "auth_required"
    await client.close()


def test_a_deactivated_users_private_channels_stop(monkeypatch):
    monkeypatch.setattr(consumers, "USER_RECHECK_SECONDS", 0.0, raising=False)
    alice, bob = _trading_pair()
    token = str(AccessToken.for_user(alice))

    async def scenario() -> None:
        client = await _subscribed(token)
        await sync_to_async(get_user_model().objects.filter(pk=alice.pk).update)(is_active=False)
        await _private_data_stops(client, bob)

    async_to_sync(scenario)()


def test_a_tokens_private_channels_stop_when_the_password_changes(monkeypatch):
    """As a page's session: a token issued under the old password no longer signs the
    connection in, nor a new one."""
    monkeypatch.setattr(consumers, "USER_RECHECK_SECONDS", 0.0, raising=False)
    alice, bob = _trading_pair()
    token = token_pair_issue(user=alice)["access"]

    def change() -> None:
        alice.set_password("another-password-2026")
        alice.save()

    async def scenario() -> None:
        client = await _subscribed(token)
        await sync_to_async(change)()
        await _private_data_stops(client, bob)
        again = await stream_connect()
        await again.send({"op": "auth", "token": token})
        assert (await again.op())["code"] == "invalid_token"
        await again.close()

    async_to_sync(scenario)()


def test_private_channels_stop_when_the_token_expires():
    alice, bob = _trading_pair()
    token = AccessToken.for_user(alice)
    token.set_exp(lifetime=timedelta(seconds=2) - token.get_token_backend().get_leeway())  # leeway included: 2 s

    async def scenario() -> None:
        client = await _subscribed(str(token))
        await asyncio.sleep(2.2)
        await _private_data_stops(client, bob)

    async_to_sync(scenario)()


def _page_session(user: Any) -> tuple[bytes, str]:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    assert session.session_key is not None
    return f"sessionid={session.session_key}".encode(), session.session_key


async def _subscribed_by_page(cookie: bytes) -> StreamClient:
    client = await stream_connect([(b"cookie", cookie), (b"host", b"testserver"), (b"origin", b"http://testserver")])
    await client.send({"op": "subscribe", "channels": ["orders", "fills"]})
    assert await client.op() == {"op": "subscribed", "channels": ["orders", "fills"]}
    await client.until("fills", 1)
    return client


@pytest.mark.parametrize("ended_by", ["logout", "password change"])
def test_a_page_sessions_private_channels_stop_when_the_session_ends(monkeypatch, ended_by):
    """A page's socket is signed in by its session cookie: logging out (the session deleted)
    or changing the password (the session's hash no longer the user's) ends it, as it ends
    the pages themselves."""
    monkeypatch.setattr(consumers, "USER_RECHECK_SECONDS", 0.0, raising=False)
    alice, bob = _trading_pair()
    cookie, session_key = _page_session(alice)

    def end() -> None:
        if ended_by == "logout":
            SessionStore(session_key).delete()
        else:
            alice.set_password("another-long-passphrase-2026")
            alice.save()

    async def scenario() -> None:
        client = await _subscribed_by_page(cookie)
        await sync_to_async(end)()
        await _private_data_stops(client, bob)

    async_to_sync(scenario)()


def test_a_page_sessions_private_channels_go_on_while_the_session_lasts(monkeypatch):
    monkeypatch.setattr(consumers, "USER_RECHECK_SECONDS", 0.0, raising=False)
    alice, bob = _trading_pair()
    cookie, _ = _page_session(alice)

    async def scenario() -> None:
        client = await _subscribed_by_page(cookie)
        await sync_to_async(place)(bob, side="sell", type="limit", quantity="0.4", price="1990.00")
        await client.until("fills", 2)
        await client.close()

    async_to_sync(scenario)()


def _signed_auth(key: str, secret: str, *, shift_ms: int = 0) -> dict[str, str]:
    """An API key's `auth`: its signature of GET /ws/v1 at the present moment (docs/streams.md)."""
    timestamp = str(time.time_ns() // 1_000_000 + shift_ms)
    signature = request_signature(secret=secret, timestamp=timestamp, method="GET", path_with_query="/ws/v1", body=b"")
    return {"op": "auth", "key": key, "timestamp": timestamp, "signature": signature}


def test_an_api_key_authenticates_the_private_channels():
    """A bot holds an API key, not a password: it signs `GET /ws/v1` as it signs a request,
    and a read key is enough (the streams only read)."""
    alice, bob = _trading_pair()
    api_key, secret = api_key_create(user=alice, label="bot", permissions=["read"])

    async def scenario() -> None:
        client = await stream_connect()
        await client.send({"op": "subscribe", "channels": ["orders"]})
        assert (await client.op())["code"] == "auth_required"
        await client.send(_signed_auth(api_key.key, secret))
        await client.send({"op": "subscribe", "channels": ["orders", "fills"]})
        assert await client.op() == {"op": "subscribed", "channels": ["orders", "fills"]}
        assert len((await client.until("orders", 1))[0]["data"]) == 1
        await sync_to_async(place)(bob, side="sell", type="limit", quantity="0.4", price="1990.00")
        fill = (await client.until("fills", 2))[1]
        assert fill["type"] == "update" and fill["data"]["liquidity"] == "maker"
        await client.close()

    async_to_sync(scenario)()


def test_a_refused_api_key_auth_answers_the_rest_apis_code_and_keeps_the_connection():
    alice, _ = _trading_pair()
    api_key, secret = api_key_create(user=alice, label="bot", permissions=["read"])

    async def scenario() -> None:
        client = await stream_connect()
        good = _signed_auth(api_key.key, secret)
        refused = [
            ({**good, "key": "0" * 32}, "invalid_api_key"),
            ({**good, "signature": "0" * 64}, "invalid_signature"),
            (_signed_auth(api_key.key, "another secret"), "invalid_signature"),
            (_signed_auth(api_key.key, secret, shift_ms=-60_000), "signature_expired"),
            ({**good, "timestamp": 5}, "malformed_message"),
            ({"op": "auth", "key": api_key.key}, "malformed_message"),
        ]
        for message, code in refused:
            await client.send(message)
            assert (await client.op())["code"] == code, message
        await client.send(good)
        await client.send(good)  # the same signature again
        assert (await client.op())["code"] == "replayed_request"
        await client.send({"op": "subscribe", "channels": ["orders"]})  # the first one signed in
        assert await client.op() == {"op": "subscribed", "channels": ["orders"]}
        await client.close()

    async_to_sync(scenario)()


def test_an_api_keys_private_channels_stop_when_the_key_is_deleted(monkeypatch):
    monkeypatch.setattr(consumers, "USER_RECHECK_SECONDS", 0.0, raising=False)
    alice, bob = _trading_pair()
    api_key, secret = api_key_create(user=alice, label="bot", permissions=["read"])

    async def scenario() -> None:
        client = await stream_connect()
        await client.send(_signed_auth(api_key.key, secret))
        await client.send({"op": "subscribe", "channels": ["orders", "fills"]})
        assert await client.op() == {"op": "subscribed", "channels": ["orders", "fills"]}
        await client.until("fills", 1)
        await sync_to_async(api_key_delete)(user_id=alice.pk, api_key_id=api_key.pk)
        await _private_data_stops(client, bob)

    async_to_sync(scenario)()


def test_a_previous_users_queued_fills_never_reach_the_next_user(monkeypatch):
    """A connection that authenticates as another user leaves the previous user's group, but
    what that group had already queued for it stays queued: a fill of Alice's handled after
    the connection, now Carol's, subscribed to `fills` was sent to Carol as hers."""
    alice, bob = _trading_pair()
    carol = UserFactory()
    published: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(publish, "relay_send", published.extend)  # kept back, sent below
    place(bob, side="sell", type="limit", quantity="0.4", price="1990.00")  # fills Alice's bid
    deadline = time.monotonic() + 30
    while not (fills := [m for g, m in list(published) if g == user_group(alice.pk) and m["channel"] == "fills"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    alices, carols = (token_pair_issue(user=user)["access"] for user in (alice, carol))

    async def scenario() -> None:
        client = await _subscribed(alices)
        # All queued before the consumer runs again: it handles one client message and one
        # layer message per turn, so the second fill comes after Carol's subscription.
        await client.send({"op": "auth", "token": carols})
        await client.send({"op": "subscribe", "channels": ["fills"]})
        layer = get_channel_layer()
        for message in fills * 2:
            await layer.group_send(user_group(alice.pk), message)
        assert await client.op() == {"op": "subscribed", "channels": ["fills"]}
        snapshot = (await client.until("fills", 2))[-1]
        assert (snapshot["type"], snapshot["data"]) == ("snapshot", [])
        later = []
        while not await client.ws.receive_nothing(timeout=0.5):
            later.append(await client.receive())
        assert later == []  # was Alice's fill, as an update of Carol's `fills`
        await client.close()

    async_to_sync(scenario)()
