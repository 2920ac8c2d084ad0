"""Shared fixtures of the security tests: a small populated world (a market, an owner
with an open order and a fill against a counterparty, another user, staff) and clients
for each actor on one shared request handler."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache as memoize
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.tokens import RefreshToken

from orders.engine.requests import OrderRequest
from orders.models import Market, Order, Trade
from orders.services.orders import order_place
from revenue.delivery.metadata import patch_failed
from revenue.jsonb import JsonMerge
from revenue.models import RevenueEvent
from revenue.services import revenue_collect
from tests.factories import StaffFactory, UserFactory, asset_get, fund, market_create

SYMBOL = "ETH-USDT"
ORDER = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "1850.00", "quantity": "0.01"}


class Clock:
    """The throttles' clock (SimpleRateThrottle.timer), moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(SimpleRateThrottle, "timer", staticmethod(clock))
    return clock


@pytest.fixture
def rates(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Sets scoped rates: DRF reads the table once, at import (SimpleRateThrottle.THROTTLE_RATES)."""

    def set_rates(**scoped: str) -> None:
        monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **scoped})

    yield set_rates


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    # Login failures and DRF throttle counters live in the cache: no test sees another's.
    cache.clear()
    yield
    cache.clear()


def new_user(*, staff: bool = False, **fields: Any) -> User:
    return cast(User, (StaffFactory if staff else UserFactory)(**fields))


def order_open(user: Any, *, price: str = "1900.00", quantity: str = "0.1", **fields: Any) -> Order:
    """A resting limit buy of `user`, placed through the service."""
    request = OrderRequest(market=SYMBOL, side="buy", type="limit", price=price, quantity=quantity, **fields)
    return Order.objects.get(pk=order_place(user=user, request=request).order_id)


def failed_event(source: str = "sec") -> RevenueEvent:
    """A revenue event whose on-chain delivery failed: staff may queue it again."""
    event = revenue_collect(stream=0, amount="10", description=f"event {source}", source_type="t", source_id=source)
    RevenueEvent.objects.filter(pk=event.pk).update(
        metadata=JsonMerge(
            "metadata", patch_failed(attempts=2, error="x", now=timezone.now(), next_retry_at=timezone.now())
        )
    )
    return event


@memoize
def _shared_handler() -> Any:
    # Building the middleware chain costs ~50 ms per client (WhiteNoise scans the static
    # files); clients keep cookies and credentials themselves, so they can share one.
    return APIClient().handler


def api_client(user: Any = None) -> APIClient:
    """A JWT client for `user` (anonymous when None) on the shared handler."""
    client = APIClient()
    client.handler = _shared_handler()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def page_client(user: Any = None, *, enforce_csrf_checks: bool = False) -> Client:
    """A session client, logged in as `user` unless None."""
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    if not enforce_csrf_checks:
        client.handler = _shared_handler()  # its enforce_csrf_checks is False
    if user is not None:
        client.force_login(user)
    return client


@dataclass
class World:
    market: Market
    owner: Any
    other: Any
    staff: Any
    counterparty: Any
    order: Order  # the owner's resting order
    trade: Trade  # the owner (maker) sold to the counterparty

    clients: dict[str, APIClient] = field(default_factory=dict)

    def api(self, who: str) -> APIClient:
        """The JWT client of 'anonymous', 'owner', 'other', 'counterparty' or 'staff' (one
        each: issuing a token writes a row)."""
        if who not in self.clients:
            self.clients[who] = api_client(None if who == "anonymous" else getattr(self, who))
        return self.clients[who]

    def page(self, who: str) -> Client:
        """A session client for the same actors."""
        return page_client(None if who == "anonymous" else getattr(self, who))


@pytest.fixture
def world(db: Any) -> World:
    market = market_create(SYMBOL)
    asset_get("TTX")  # my-impact needs the TTX asset
    owner, other, counterparty = new_user(), new_user(), new_user()
    staff = new_user(staff=True)
    for person in (owner, other, staff, counterparty):
        fund(person, "USDT", "100000")
        fund(person, "ETH", "10")
    fund(owner, "TTX", "1500")
    order = order_open(owner)
    order_place(
        user=owner, request=OrderRequest(market=SYMBOL, side="sell", type="limit", price="2000.00", quantity="0.5")
    )
    order_place(user=counterparty, request=OrderRequest(market=SYMBOL, side="buy", type="market", quantity="0.2"))
    trade = Trade.objects.get(maker_user=owner, taker_user=counterparty)
    return World(market, owner, other, staff, counterparty, order, trade)
