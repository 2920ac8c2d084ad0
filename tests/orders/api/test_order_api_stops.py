"""Stop-loss and take-profit orders: they wait in `pending_trigger` holding their funds,
fire when the last trade price touches the stop price (in the order's direction), then
execute as market orders; cancelling one releases its funds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders.models import Order
from orders.services import market_reference_price_set
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house

pytestmark = pytest.mark.django_db

D = Decimal


def trade_at(trader, price: str) -> None:
    """Two fresh traders trade 0.01 at `price`: the market's last price becomes `price`."""
    seller = trader(ETH="0.01")
    buyer = trader(USDT="100")
    seller.order(side="sell", type="limit", quantity="0.01", price=price)
    filled = buyer.order(side="buy", type="limit", quantity="0.01", price=price, time_in_force="IOC").json()
    assert (filled["status"], filled["fills"][0]["price"]) == ("filled", f"{price}000000")


def events(order: dict) -> list[tuple[str, str | None]]:
    return [(e["status"], e["reason"]) for e in order["events"]]


def test_a_stop_waits_pending_holding_its_funds_off_the_book(market, trader):
    me = trader(ETH="1", USDT="5000")
    sell = me.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1900.00").json()
    buy = me.order(side="buy", type="take_profit", quantity="1", stop_price="1800.00").json()

    assert (sell["status"], sell["status_reason"], sell["stop_price"], sell["price"]) == (
        "pending_trigger",
        None,
        "1900.00000000",
        None,
    )
    assert events(sell) == [("pending_trigger", None)]
    assert buy["status"] == "pending_trigger"
    # A sell holds its base; a buy holds a market buy's lock at max(reference, stop) = 2000:
    # 1 x 2100 (the guard) + 12 bps.
    assert Order.objects.get(pk=sell["id"]).locked_amount == me.wallet("ETH").locked == D("0.5")
    assert Order.objects.get(pk=buy["id"]).locked_amount == me.wallet("USDT").locked == D("2102.52")
    assert me.api.get("/api/markets/ETH-USDT/book").json() == {"symbol": "ETH-USDT", "bids": [], "asks": []}
    assert_invariants()


def test_a_buy_stop_above_the_reference_locks_at_its_stop_price(market, trader):
    me = trader(USDT="5000")
    order = me.order(side="buy", type="stop_loss", quantity="1", stop_price="2200.00").json()
    # 1 x 2200 x 1.05 + 12 bps
    assert Order.objects.get(pk=order["id"]).locked_amount == D("2310") + D("2.772")
    assert_invariants()


# (type, side, stop price, last price that does not fire, last price that touches, resting liquidity)
STOPS = [
    ("stop_loss", "sell", "1950.00", "1950.01", "1950.00", ("buy", "1940.00")),
    ("stop_loss", "buy", "2050.00", "2049.99", "2050.00", ("sell", "2060.00")),
    ("take_profit", "sell", "2050.00", "2049.99", "2050.00", ("buy", "1960.00")),
    ("take_profit", "buy", "1950.00", "1950.01", "1950.00", ("sell", "2040.00")),
]


@pytest.mark.parametrize(("kind", "side", "stop", "not_yet", "touch", "liquidity"), STOPS)
def test_stop_fires_when_the_last_price_touches_and_executes_as_a_market_order(
    market, trader, kind, side, stop, not_yet, touch, liquidity
):
    me = trader(ETH="1", USDT="5000")
    provider = trader(ETH="1", USDT="5000")
    resting = provider.order(side=liquidity[0], type="limit", quantity="1", price=liquidity[1]).json()
    placed = me.order(side=side, type=kind, quantity="0.5", stop_price=stop).json()
    assert placed["status"] == "pending_trigger"

    trade_at(trader, not_yet)
    assert Order.objects.get(pk=placed["id"]).status == "pending_trigger"
    assert_invariants()

    trade_at(trader, touch)
    order = me.api.get(f"/api/orders/{placed['id']}").json()
    assert events(order) == [("pending_trigger", None), ("open", "triggered"), ("filled", None)]
    assert (order["type"], order["time_in_force"], order["price"]) == (kind, "IOC", None)
    # executed as a market order: against the resting order, at its price, as the taker
    assert [(f["price"], f["quantity"], f["liquidity"], f["counterparty"]) for f in order["fills"]] == [
        (f"{liquidity[1]}000000", "0.50000000", "taker", "book")
    ]
    assert Order.objects.get(pk=resting["id"]).filled_quantity == D("0.5")
    assert Order.objects.get(pk=placed["id"]).triggered_at is not None
    assert me.wallet("ETH").locked == me.wallet("USDT").locked == 0
    assert_invariants()


def test_a_stop_placed_when_the_price_is_already_there_executes_at_once(market, trader):
    provider = trader(USDT="5000")
    provider.order(side="buy", type="limit", quantity="1", price="1990.00")
    trade_at(trader, "1995.00")
    me = trader(ETH="1")
    order = me.order(side="sell", type="stop_loss", quantity="0.5", stop_price="2000.00").json()
    assert events(order) == [("pending_trigger", None), ("open", "triggered"), ("filled", None)]
    assert order["fills"][0]["price"] == "1990.00000000"
    assert_invariants()


def test_a_triggered_stop_without_liquidity_expires(market, trader):
    me = trader(ETH="1")
    placed = me.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1990.00").json()
    trade_at(trader, "1990.00")
    order = me.api.get(f"/api/orders/{placed['id']}").json()
    assert events(order) == [("pending_trigger", None), ("open", "triggered"), ("expired", "no_liquidity")]
    assert (order["filled_quantity"], order["remaining_quantity"]) == ("0.00000000", "0.50000000")
    assert me.wallet("ETH").locked == 0
    assert_invariants()


def test_a_triggered_fok_stop_is_all_or_nothing(market, trader):
    me = trader(ETH="1")
    provider = trader(USDT="5000")
    provider.order(side="buy", type="limit", quantity="0.3", price="1980.00")
    placed = me.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1990.00", time_in_force="FOK").json()
    trade_at(trader, "1990.00")
    order = Order.objects.get(pk=placed["id"])
    assert (order.status, order.status_reason, order.filled_quantity) == ("expired", "fok_not_fillable", 0)
    assert_invariants()


def test_a_triggered_stop_is_filled_by_the_house(market, trader):
    fund_house(market, base="1")
    me = trader(USDT="5000")
    placed = me.order(side="buy", type="stop_loss", quantity="0.1", stop_price="2050.00").json()
    trade_at(trader, "2050.00")
    order = me.api.get(f"/api/orders/{placed['id']}").json()
    assert order["status"] == "filled"
    assert [(f["price"], f["counterparty"]) for f in order["fills"]] == [("2010.00000000", "house")]
    assert_invariants()


def test_triggered_stops_can_trigger_further_stops(market, trader):
    first = trader(ETH="1")
    second = trader(ETH="1")
    provider = trader(USDT="10000")
    provider.order(side="buy", type="limit", quantity="0.5", price="1980.00")
    provider.order(side="buy", type="limit", quantity="0.5", price="1970.00")
    one = first.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1990.00").json()
    two = second.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1980.00").json()
    trade_at(trader, "1990.00")  # fires `one`, which trades at 1980 and so fires `two`
    assert Order.objects.get(pk=one["id"]).status == "filled"
    two_now = Order.objects.get(pk=two["id"])
    assert (two_now.status, two_now.quote_filled) == ("filled", D("985"))
    assert_invariants()


def test_cancelling_a_pending_stop_releases_its_funds(market, trader):
    me = trader(ETH="1", USDT="3000")
    sell = me.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1900.00").json()
    buy = me.order(side="buy", type="stop_loss", quantity="1", stop_price="2100.00").json()
    assert me.wallet("USDT").locked > 0 and me.wallet("ETH").locked > 0

    for placed in (sell, buy):
        response = me.api.post(f"/api/orders/{placed['id']}/cancel")
        assert response.status_code == 200
        order = response.json()
        assert (order["status"], order["status_reason"]) == ("cancelled", "user_cancelled")
        assert events(order) == [("pending_trigger", None), ("cancelled", "user_cancelled")]
    assert (me.wallet("ETH").locked, me.wallet("USDT").locked) == (0, 0)
    assert (me.wallet("ETH").balance, me.wallet("USDT").balance) == (D("1"), D("3000"))

    # A cancelled stop never fires.
    trade_at(trader, "1900.00")
    assert Order.objects.get(pk=sell["id"]).status == "cancelled"
    assert_invariants()


def test_a_triggered_stop_that_cannot_lock_enough_ends_in_error_with_funds_released(market, trader):
    me = trader(USDT="2155.083")  # exactly the lock at the stop price: 2050 x 1.05 + 12 bps
    provider = trader(ETH="1")
    provider.order(side="sell", type="limit", quantity="1", price="2100.00")
    placed = me.order(side="buy", type="stop_loss", quantity="1", stop_price="2050.00").json()
    assert me.wallet("USDT").locked == D("2155.083")
    # The reference moves up: executing now needs a bigger lock than the order holds.
    market_reference_price_set(symbol="ETH-USDT", price="2100.00")
    trade_at(trader, "2050.00")
    order = me.api.get(f"/api/orders/{placed['id']}").json()
    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (
        "error",
        "insufficient_funds",
        "0.00000000",
    )
    assert events(order) == [("pending_trigger", None), ("open", "triggered"), ("error", "insufficient_funds")]
    assert Order.objects.get(pk=placed["id"]).triggered_at is not None
    assert (me.wallet("USDT").balance, me.wallet("USDT").locked) == (D("2155.083"), 0)
    assert_invariants()
