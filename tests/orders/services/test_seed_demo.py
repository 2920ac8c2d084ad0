from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from orders.engine.requests import OrderRequest
from orders.models import Order
from orders.selectors.ledger import ledger_check
from orders.services import market_reference_price_set
from orders.services.demo import demo_data_seed
from orders.services.orders import order_cancel, order_place
from tests.factories import market_create

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


def test_seed_demo_starts_again_whatever_the_last_run_left():
    """The crash of issue 19: after a reference price change, a second run placed its
    resting orders at other prices under the same client order ids (DuplicateClientOrderId)."""

    first = demo_data_seed()
    assert (first.placed, first.present, first.skipped) == (30, 0, {})
    # Trading: carol lifts alice's best ETH ask; bob's best BTC bid is cancelled.
    users = get_user_model().objects
    carol, bob = users.get(username="carol"), users.get(username="bob")
    order_place(user=carol, request=OrderRequest(market="ETH-USDT", side="buy", type="limit", quantity="0.5",
                                                 price="2001.00"))  # fmt: skip
    best_bid = Order.objects.get(user=bob, client_order_id="demo-BTC-USDT-buy-1")
    order_cancel(user=bob, order_id=best_bid.pk)
    # The reference prices move, one of them far below the demo's levels.
    market_reference_price_set(symbol="ETH-USDT", price="2150.00")
    market_reference_price_set(symbol="TTX-USDT", price="0.0020", large_move=True)
    again = demo_data_seed()
    assert (again.placed, again.present, again.skipped) == (0, 30, {})
    call_command("seed_demo")
    assert Order.objects.filter(client_order_id__startswith="demo-").count() == 30
    assert all(row.balanced for row in ledger_check())


def test_seed_demo_skips_what_the_data_no_longer_allows():
    """A first run on data it did not make: a market whose reference price leaves no room
    below it for the demo's bids, and a trader whose USDT is already spoken for."""

    market_create("TTX-USDT", price_tick="0.0001", quantity_step="1", min_quantity="1", reference_price="0.0020")
    result = demo_data_seed()
    assert result.placed + sum(result.skipped.values()) == 30
    assert result.skipped, result  # bids at 0.0010, 0.0000, -0.0010, ... are refused, not fatal
    assert Order.objects.filter(market__symbol="TTX-USDT", side="sell", status="open").count() == 5
    assert all(row.balanced for row in ledger_check())
    assert demo_data_seed().placed == 0
