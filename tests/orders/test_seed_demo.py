from __future__ import annotations

import pytest
from django.core.management import call_command

from orders.models import Order
from orders.selectors.ledger import ledger_check

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_rests_orders_on_both_sides():
    call_command("seed_demo")
    call_command("seed_demo")
    for symbol in ("ETH-USDT", "BTC-USDT", "TTX-USDT"):
        resting = Order.objects.filter(market__symbol=symbol, status="open")
        assert resting.filter(side="buy").count() == 5
        assert resting.filter(side="sell").count() == 5
        best_bid = max(o.price for o in resting.filter(side="buy"))
        best_ask = min(o.price for o in resting.filter(side="sell"))
        assert best_bid < best_ask
    assert all(row.balanced for row in ledger_check())
