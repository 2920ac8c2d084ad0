"""Helpers shared by the order tests: placing orders through the service or the API,
the house account, wallet reads."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from orders.engine.requests import OrderRequest
from orders.models import LIVE_STATUSES, Market, Order, Wallet
from orders.services.orders import order_place
from orders.services.wallets import house_stock_credit
from orders.system_accounts import house_user_id
from tests.factories import UserFactory, fund


@dataclass
class Trader:
    """A user with a JWT-authenticated API client."""

    user: Any
    api: APIClient

    def order(self, **body: Any) -> Any:
        return post_order(self.api, **body)

    def wallet(self, asset: str) -> Wallet:
        return wallet(self.user, asset)


@cache
def _shared_handler() -> Any:
    # Building the middleware chain (WhiteNoise scans the static files) costs ~50 ms per
    # client; clients keep their credentials themselves, so they can share one handler.
    return APIClient().handler


def trader_create(**holdings: str) -> Trader:
    user = UserFactory()
    for asset, amount in holdings.items():
        fund(user, asset, amount)
    client = APIClient()
    client.handler = _shared_handler()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return Trader(user=user, api=client)


def resting_trader() -> Trader:
    """A trader with a resting buy and a pending stop in ETH-USDT and a resting sell in
    BTC-USDT (the fixture two_markets)."""
    trader = trader_create(USDT="10000", ETH="1", BTC="1")
    trader.order(side="buy", type="limit", quantity="0.1", price="1900.00")
    trader.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1800.00")
    trader.order(market="BTC-USDT", side="sell", type="limit", quantity="0.1", price="31000.00")
    assert len(live_order_ids(trader.user)) == 3
    return trader


def live_order_ids(user: Any) -> set[int]:
    """The ids of `user`'s live orders (pending stops included), as stored."""
    return set(Order.objects.filter(user=user, status__in=LIVE_STATUSES).values_list("pk", flat=True))


def place(user: Any, *, market: str = "ETH-USDT", **fields: Any) -> Order:
    """Place an order through the service and return it as stored after matching."""
    result = order_place(user=user, request=OrderRequest(market=market, **fields))
    return Order.objects.get(pk=result.order_id)


def post_order(client: APIClient, **body: Any) -> Any:
    body.setdefault("market", "ETH-USDT")
    return client.post("/api/orders", body, format="json")


def house_user() -> Any:
    return get_user_model().objects.get(pk=house_user_id())


def fund_house(market: Market, *, base: str | None = None, quote: str | None = None) -> Any:
    """House inventory lives in sub-wallets bucketed by market id (the supported way in)."""
    if base is not None:
        house_stock_credit(market=market, asset_symbol=market.base.symbol, amount=base)
    if quote is not None:
        house_stock_credit(market=market, asset_symbol=market.quote.symbol, amount=quote)
    return house_user()


def wallet(user_or_id: Any, asset: str, *, bucket: int = 0) -> Wallet:
    """The wallet row, or an empty unsaved one when it does not exist yet."""
    user_id = getattr(user_or_id, "pk", user_or_id)
    found = Wallet.objects.filter(user_id=user_id, asset__symbol=asset, bucket=bucket).first()
    return found if found is not None else Wallet(user_id=user_id, balance=Decimal(0), locked=Decimal(0))
