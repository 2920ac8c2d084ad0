"""Demo data for `make run` (manage.py seed_demo): assets, markets, a staff user, demo
traders with balances, house inventory per market, and resting orders on both sides of
every book. Safe to run at every start, whatever the last run left: nothing is created
twice, and what cannot be placed any more (a client order id used before, funds spent by
trading, a price the moved reference makes invalid) is skipped and counted, never fatal."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from core.errors import ApplicationError
from orders.engine.requests import OrderRequest
from orders.models import Deposit, Market, Order, OrderSide, OrderType
from orders.services.markets import markets_ensure
from orders.services.orders import order_place
from orders.services.wallets import house_stock_credit, wallet_credit
from orders.system_accounts import fee_account_user_id, house_user_id

logger = logging.getLogger(__name__)

ASSETS = {"USDT": "Tether USD", "ETH": "Ether", "BTC": "Bitcoin", "TTX": "Platform token"}
# symbol: tick, step, min quantity, reference price
MARKETS = {
    "ETH-USDT": ("0.01", "0.0001", "0.0001", "2000.00"),
    "BTC-USDT": ("0.01", "0.00001", "0.00001", "60000.00"),
    "TTX-USDT": ("0.0001", "1", "1", "0.5000"),
}
TRADERS = {
    "alice": {"USDT": "100000", "ETH": "50", "BTC": "2", "TTX": "25000"},
    "bob": {"USDT": "100000", "ETH": "50", "BTC": "2", "TTX": "1500"},
    "carol": {"USDT": "50000", "ETH": "20", "BTC": "1", "TTX": "150"},
}
HOUSE_INVENTORY = {"ETH-USDT": ("20", "50000"), "BTC-USDT": ("1", "50000"), "TTX-USDT": ("200000", "50000")}
STAFF_USERNAME = "admin"
# symbol, price gap between levels, quantity per order
RESTING_BOOK = [("ETH-USDT", "1.00", "0.5"), ("BTC-USDT", "10.00", "0.02"), ("TTX-USDT", "0.0010", "1000")]
RESTING_LEVELS = 5
CLIENT_ORDER_PREFIX = "demo-"


def demo_password() -> str:
    return os.environ.get("DEMO_PASSWORD", "demo-password-2026")


def demo_logins() -> list[tuple[str, str]]:
    """(username, role) of the demo accounts."""
    return [(STAFF_USERNAME, "staff"), *((name, "trader") for name in TRADERS)]


@dataclass
class DemoSeedResult:
    placed: int = 0
    present: int = 0  # resting orders of an earlier run (whatever became of them)
    skipped: dict[str, int] = field(default_factory=dict)  # refusal code -> orders not placed


def _deposited(*, user_id: int, asset_symbol: str, bucket: int = 0) -> bool:
    return Deposit.objects.filter(user_id=user_id, asset__symbol=asset_symbol, bucket=bucket).exists()


def demo_data_seed() -> DemoSeedResult:
    markets = markets_ensure(assets=ASSETS, markets=MARKETS)
    users = get_user_model().objects
    if not users.filter(username=STAFF_USERNAME).exists():
        users.create_superuser(STAFF_USERNAME, "admin@localhost", demo_password())
    for username, balances in TRADERS.items():
        user = users.filter(username=username).first() or users.create_user(
            username, f"{username}@localhost", demo_password()
        )
        for asset, amount in balances.items():
            if not _deposited(user_id=user.pk, asset_symbol=asset):
                wallet_credit(username=username, asset_symbol=asset, amount=amount)
    house_id = house_user_id()
    fee_account_user_id()
    for symbol, amounts in HOUSE_INVENTORY.items():
        market = markets[symbol]
        for stock, amount in zip((market.base, market.quote), amounts, strict=True):
            if not _deposited(user_id=house_id, asset_symbol=stock.symbol, bucket=market.pk):
                house_stock_credit(market=market, asset_symbol=stock.symbol, amount=amount)
    return _resting_orders_seed(asker=users.get(username="alice"), bidder=users.get(username="bob"))


def _resting_orders_seed(*, asker: AbstractBaseUser, bidder: AbstractBaseUser) -> DemoSeedResult:
    """Resting orders on both sides of every market, around the market's reference price
    at the time of the first run. A client order id once used (by an order of any status:
    resting, filled, cancelled) is never placed again, whatever the reference price is now;
    the service is the one that checks prices and funds, and its refusals are skipped."""
    result = DemoSeedResult()
    used = set(
        Order.objects.filter(user__in=[asker, bidder], client_order_id__startswith=CLIENT_ORDER_PREFIX).values_list(
            "user_id", "client_order_id"
        )
    )
    for symbol, gap, quantity in RESTING_BOOK:
        market = Market.objects.get(symbol=symbol)
        for level in range(1, RESTING_LEVELS + 1):
            for user, side, sign in ((asker, OrderSide.SELL, 1), (bidder, OrderSide.BUY, -1)):
                client_order_id = f"{CLIENT_ORDER_PREFIX}{symbol}-{side}-{level}"
                if (user.pk, client_order_id) in used:
                    result.present += 1
                    continue
                price = market.reference_price + sign * Decimal(gap) * level
                request = OrderRequest(market=symbol, side=side, type=OrderType.LIMIT, quantity=quantity,
                                       price=str(price), client_order_id=client_order_id)  # fmt: skip
                try:
                    order_place(user=user, request=request)
                except ApplicationError as refused:
                    if refused.status >= 500:  # the engine is down: starting must fail loudly
                        raise
                    result.skipped[refused.code] = result.skipped.get(refused.code, 0) + 1
                    logger.info("demo order not placed", extra={"client_order_id": client_order_id,
                                                                "code": refused.code})  # fmt: skip
                    continue
                result.placed += 1
    return result
