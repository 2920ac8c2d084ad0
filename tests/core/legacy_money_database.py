"""Builds an SQLite database as `make run` made it before money columns were text
(core.fields): run as a process (`python -m tests.core.legacy_money_database`) with
VAR_DIR pointing at an empty folder. MoneyField behaves as the DecimalField it was
(columns declared `decimal`, amounts stored as floats), the migrations run up to the
ones that convert, and rows with money are written through the ORM as the platform
wrote them. The amounts are printed as JSON for the test to compare."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from unittest import mock

import django
from django.db import models

# Amounts as written (USDT: up to 15 significant digits, which a float keeps; ETH: 17,
# which it does not).
DEPOSITS = ["100.5", "0.00000001", "0.1", "1999.99999999", "12345.6789", "70000000.1"]
WIDE = "123456789.12345679"


def _legacy_money_field() -> Any:
    from core.fields import MoneyField

    return mock.patch.multiple(
        MoneyField,
        get_internal_type=lambda self: "DecimalField",
        db_type=models.DecimalField.db_type,
        cast_db_type=models.DecimalField.cast_db_type,
        get_db_prep_value=models.DecimalField.get_db_prep_value,
        get_placeholder=lambda self, value, compiler, connection: "%s",
    )


def main() -> None:
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from orders.models import Asset, Market, Order, Trade, Wallet
    from revenue.models import RevenueStream

    with _legacy_money_field():
        executor = MigrationExecutor(connection)
        before = {"orders": ("orders", "0002_trade_outbox"), "revenue": ("revenue", "0008_staff_action")}
        targets = [before.get(app, (app, name)) for app, name in executor.loader.graph.leaf_nodes()]
        executor.migrate(targets)
        # Deposits as their table was then (a column added since, `reference`, is not there yet).
        then = executor.loader.project_state(targets).apps.get_model("orders", "Deposit")
        user_model = get_user_model()
        alice = user_model.objects.create(username="alice")
        bob = user_model.objects.create(username="bob")
        usdt = Asset.objects.create(symbol="USDT", name="Tether")
        eth = Asset.objects.create(symbol="ETH", name="Ether")
        market = Market.objects.create(
            symbol="ETH-USDT",
            base=eth,
            quote=usdt,
            price_tick=Decimal("0.01"),
            quantity_step=Decimal("0.00000001"),
            min_quantity=Decimal("0.00000001"),
            reference_price=Decimal("2000.5"),
            last_price=Decimal("2000.25"),
        )
        # Alice gets the deposits; she pays 0.1 USDT to Bob (a transfer inside the
        # ledger, as a trade would), so the balances are not just the deposits.
        total = Decimal(0)
        for amount in DEPOSITS:
            then.objects.create(user_id=alice.pk, asset_id=usdt.pk, amount=Decimal(amount))
            total += Decimal(amount)
        Wallet.objects.create(user=alice, asset=usdt, balance=total - Decimal("0.1"), locked=Decimal("0.5"))
        Wallet.objects.create(user=bob, asset=usdt, balance=Decimal("0.1"))
        then.objects.create(user_id=bob.pk, asset_id=eth.pk, amount=Decimal(WIDE))
        Wallet.objects.create(user=bob, asset=eth, balance=Decimal(WIDE))
        now = datetime.now(tz=UTC)
        common = {"user": alice, "market": market, "side": "buy", "type": "limit", "time_in_force": "GTC"}
        orders = [
            Order.objects.create(
                **common,
                price=Decimal(price),
                quantity=Decimal("0.25"),
                locked_amount=Decimal(price) * Decimal("0.25") if status == "open" else 0,
                filled_quantity=Decimal("0.25") if status == "filled" else 0,
                status=status,
                request_fingerprint=f"f{index}",
                created_at=now,
                updated_at=now,
            )
            for index, (price, status) in enumerate([("1999.5", "open"), ("2000.25", "filled"), ("2", "open")])
        ]
        Trade.objects.create(
            market=market,
            price=Decimal("2000.25"),
            quantity=Decimal("0.25"),
            quote_amount=Decimal("500.0625"),
            taker_side="buy",
            taker_order=orders[1],
            taker_user=alice,
            maker_user=bob,
            taker_fee=Decimal("0.00025"),
            maker_fee=Decimal(0),
            is_house=True,
            reference_price=Decimal("2000.5"),
            executed_at=now,
        )
        RevenueStream.objects.filter(pk=RevenueStream.objects.order_by("pk").values("pk")[:1]).update(
            collected=Decimal("1.25"), target_monthly=Decimal("1000")
        )
    print(json.dumps({"total": str(total)}))


if __name__ == "__main__":
    main()
