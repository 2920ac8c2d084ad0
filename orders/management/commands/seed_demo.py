"""Idempotent demo data: assets, markets, a staff user, demo traders with balances,
house inventory per market, and (from the order engine on) resting orders."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from orders.engine.requests import OrderRequest
from orders.models import Asset, Deposit, Market
from orders.services import wallet_credit
from orders.services.orders import order_place
from orders.system_accounts import fee_account_user_id, house_user_id

ASSETS = {"USDT": "Tether USD", "ETH": "Ether", "BTC": "Bitcoin", "TTX": "Platform token"}
MARKETS = [
    # symbol, tick, step, min quantity, reference price
    ("ETH-USDT", "0.01", "0.0001", "0.0001", "2000.00"),
    ("BTC-USDT", "0.01", "0.00001", "0.00001", "60000.00"),
    ("TTX-USDT", "0.0001", "1", "1", "0.5000"),
]
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


def demo_password() -> str:
    return os.environ.get("DEMO_PASSWORD", "demo-password-2026")


class Command(BaseCommand):
    help = "Create demo assets, markets, users, balances and house inventory (safe to run again)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--print-logins", action="store_true", help="Only print the demo logins.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["print_logins"]:
            for username in [STAFF_USERNAME, *TRADERS]:
                role = "staff" if username == STAFF_USERNAME else "trader"
                self.stdout.write(f"    {username:<8} / {demo_password()}   ({role})")
            return
        assets = {
            symbol: Asset.objects.get_or_create(symbol=symbol, defaults={"name": name})[0]
            for symbol, name in ASSETS.items()
        }
        markets = {}
        for symbol, tick, step, min_qty, ref in MARKETS:
            base, quote = symbol.split("-")
            markets[symbol], _ = Market.objects.get_or_create(
                symbol=symbol,
                defaults={
                    "base": assets[base],
                    "quote": assets[quote],
                    "price_tick": Decimal(tick),
                    "quantity_step": Decimal(step),
                    "min_quantity": Decimal(min_qty),
                    "reference_price": Decimal(ref),
                },
            )
        users = get_user_model().objects
        if not users.filter(username=STAFF_USERNAME).exists():
            users.create_superuser(STAFF_USERNAME, "admin@localhost", demo_password())
        for username, balances in TRADERS.items():
            if not users.filter(username=username).exists():
                users.create_user(username, f"{username}@localhost", demo_password())
            for asset, amount in balances.items():
                self._credit_once(username=username, asset=asset, amount=amount, bucket=0)
        house = users.get(pk=house_user_id())
        fee_account_user_id()
        for symbol, (base_amount, quote_amount) in HOUSE_INVENTORY.items():
            market = markets[symbol]
            self._credit_once(
                username=house.get_username(), asset=market.base.symbol, amount=base_amount, bucket=market.pk
            )
            self._credit_once(
                username=house.get_username(), asset=market.quote.symbol, amount=quote_amount, bucket=market.pk
            )
        self._seed_extensions()
        self.stdout.write(self.style.SUCCESS("Demo data ready."))

    def _credit_once(self, *, username: str, asset: str, amount: str, bucket: int) -> None:
        if not Deposit.objects.filter(user__username=username, asset__symbol=asset, bucket=bucket).exists():
            wallet_credit(username=username, asset_symbol=asset, amount=amount, bucket=bucket)

    def _seed_extensions(self) -> None:
        """Resting orders on both sides of every market (revenue streams come from migrations).
        Placed through the order service with fixed client order ids, so a second run
        finds them instead of placing them again."""
        users = get_user_model().objects
        asker, bidder = users.get(username="alice"), users.get(username="bob")
        for symbol, gap, quantity in RESTING_BOOK:
            market = Market.objects.get(symbol=symbol)
            for level in range(1, RESTING_LEVELS + 1):
                for user, side, sign in ((asker, "sell", 1), (bidder, "buy", -1)):
                    price = market.reference_price + sign * Decimal(gap) * level
                    order_place(
                        user=user,
                        request=OrderRequest(
                            market=symbol,
                            side=side,
                            type="limit",
                            quantity=quantity,
                            price=str(price),
                            client_order_id=f"demo-{symbol}-{side}-{level}",
                        ),
                    )
