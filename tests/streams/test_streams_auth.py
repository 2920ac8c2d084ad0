"""A connection's authentication does not outlive its credentials (docs/streams.md,
"Authentication"): once the access token has expired, or its user is deactivated, the
private channels stop, the client is told, and `orders` / `fills` need a new auth."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from orders.streams import consumers
from tests.factories import UserFactory, fund, market_create
from tests.orders.support import place
from tests.streams.support import StreamClient, stream_connect

pytestmark = pytest.mark.django_db(transaction=True)


async def _rest(client: StreamClient) -> list[dict[str, Any]]:
    """Everything the server sends until it falls silent."""
    received = []
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
    assert [m["code"] for m in received if m.get("op") == "error"] == ["invalid_token"]
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


def test_private_channels_stop_when_the_token_expires():
    alice, bob = _trading_pair()
    token = AccessToken.for_user(alice)
    token.set_exp(lifetime=timedelta(seconds=2))

    async def scenario() -> None:
        client = await _subscribed(str(token))
        await asyncio.sleep(2.2)
        await _private_data_stops(client, bob)

    async_to_sync(scenario)()
