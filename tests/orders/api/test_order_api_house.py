"""House auto-fill: market orders only, at the reference price +/- 0.5% rounded to the tick
against the taker, capped at MAX_AUTO_FILL_USD of notional and at the house's real
inventory (its sub-wallets for the market), counted by FOK exactly like the fill.

ETH-USDT at reference 2000.00: the house sells at 2010.00 and buys at 1990.00; 500 USD
buys floor(500 / 2010 / 0.0001) x 0.0001 = 0.2487 and sells 0.2512."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders.models import Order, Trade
from orders.services import market_reference_price_set
from orders.system_accounts import fee_account_user_id, house_user_id
from tests.factories import fund, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house, house_user, wallet

pytestmark = pytest.mark.django_db

D = Decimal


def house(asset: str, market) -> tuple[Decimal, Decimal]:
    row = wallet(house_user_id(), asset, bucket=market.pk)
    return row.balance, row.locked


def fills(order: dict) -> list[tuple[str, str, str]]:
    return [(f["price"], f["quantity"], f["counterparty"]) for f in order["fills"]]


def test_house_fills_a_market_buy_at_reference_plus_half_a_percent(market, trader):
    fund_house(market, base="10", quote="1000")
    taker = trader(USDT="1000")
    order = taker.order(side="buy", type="market", quantity="0.1").json()

    assert (order["status"], order["filled_quantity"]) == ("filled", "0.10000000")
    assert fills(order) == [("2010.00000000", "0.10000000", "house")]
    assert order["fills"][0]["liquidity"] == "taker"
    assert order["fee_paid"] == "0.24120000"  # 201 x 12 bps
    trade = Trade.objects.get()
    assert (trade.is_house, trade.maker_order_id, trade.maker_user_id, trade.maker_fee) == (
        True,
        None,
        house_user_id(),
        0,
    )
    assert trade.reference_price == D("2000")
    # The house gives base from, and takes the notional (no fee) into, its sub-wallets of this market.
    assert house("ETH", market) == (D("9.9"), 0)
    assert house("USDT", market) == (D("1201"), 0)
    assert wallet(fee_account_user_id(), "USDT", bucket=market.pk).balance == D("0.2412")
    assert (taker.wallet("USDT").balance, taker.wallet("ETH").balance) == (D("1000") - D("201.2412"), D("0.1"))
    assert_invariants()


def test_house_fills_a_market_sell_at_reference_minus_half_a_percent(market, trader):
    fund_house(market, base="1", quote="1000")
    taker = trader(ETH="1")
    order = taker.order(side="sell", type="market", quantity="0.2").json()
    assert fills(order) == [("1990.00000000", "0.20000000", "house")]
    assert order["fee_paid"] == "0.47760000"  # 398 x 12 bps
    assert house("ETH", market) == (D("1.2"), 0)
    assert house("USDT", market) == (D("602"), 0)
    assert taker.wallet("USDT").balance == D("398") - D("0.4776")
    assert_invariants()


def test_house_price_is_rounded_to_the_tick_against_the_taker(market, trader):
    market_reference_price_set(symbol="ETH-USDT", price="2000.03")
    fund_house(market, base="1", quote="1000")
    taker = trader(ETH="1", USDT="1000")
    # 2000.03 x 1.005 = 2010.03015 -> up to 2010.04; 2000.03 x 0.995 = 1990.02985 -> down to 1990.02
    assert fills(taker.order(side="buy", type="market", quantity="0.01").json()) == [
        ("2010.04000000", "0.01000000", "house")
    ]
    assert fills(taker.order(side="sell", type="market", quantity="0.01").json()) == [
        ("1990.02000000", "0.01000000", "house")
    ]
    assert_invariants()


@pytest.mark.parametrize(
    ("side", "cap", "limit_usd"),
    [("buy", "0.2487", "500"), ("sell", "0.2512", "500"), ("buy", "0.0497", "100"), ("sell", "0.0502", "100")],
)
def test_house_fill_is_capped_at_the_max_auto_fill_notional(market, trader, settings, side, cap, limit_usd):
    settings.MAX_AUTO_FILL_USD = D(limit_usd)
    fund_house(market, base="100", quote="100000")
    taker = trader(ETH="1", USDT="5000")
    order = taker.order(side=side, type="market", quantity="1").json()
    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (
        "expired",
        "no_liquidity",
        f"{cap}0000",
    )
    assert order["remaining_quantity"] == f"{D('1') - D(cap):.8f}"
    trade = Trade.objects.get()
    assert trade.quote_amount <= D(limit_usd) < trade.quote_amount + trade.price * D("0.0001")
    assert_invariants()


@pytest.mark.parametrize(
    ("side", "inventory", "filled"),
    [
        ("buy", {"base": "0.1"}, "0.10000000"),
        ("buy", {"base": "0.00009999"}, None),  # less than one quantity step
        ("buy", {"quote": "100000"}, None),  # the house has no ETH to sell
        ("sell", {"quote": "100"}, "0.05020000"),  # 100 / 1990 -> 0.0502
        ("sell", {"base": "100"}, None),  # the house has no USDT to pay
    ],
)
def test_house_fill_is_capped_at_its_real_inventory(market, trader, side, inventory, filled):
    fund_house(market, **inventory)
    taker = trader(ETH="1", USDT="5000")
    order = taker.order(side=side, type="market", quantity="1").json()
    assert (order["status"], order["status_reason"]) == ("expired", "no_liquidity")
    if filled is None:
        assert order["fills"] == []
    else:
        assert (order["filled_quantity"], order["fills"][0]["counterparty"]) == (filled, "house")
    assert_invariants()


def test_house_inventory_of_another_bucket_is_not_used(market, trader):
    btc = market_create("BTC-USDT", reference_price="30000.00")
    fund_house(btc, base="10", quote="100000")
    fund(house_user(), "ETH", "10")  # the house's bucket 0: not inventory of any market
    fund(house_user(), "ETH", "10", bucket=btc.pk)  # another market's bucket
    taker = trader(USDT="5000")
    order = taker.order(side="buy", type="market", quantity="0.1").json()
    assert (order["status"], order["status_reason"], order["fills"]) == ("expired", "no_liquidity", [])
    assert_invariants()


@pytest.mark.parametrize(
    ("tif", "status", "reason"),
    [("GTC", "open", None), ("IOC", "expired", "ioc_remainder"), ("FOK", "expired", "fok_not_fillable")],
)
def test_house_never_fills_limit_orders(market, trader, tif, status, reason):
    fund_house(market, base="10", quote="100000")
    taker = trader(USDT="5000")
    order = taker.order(side="buy", type="limit", quantity="0.1", price="2100.00", time_in_force=tif).json()
    assert (order["status"], order["status_reason"], order["fills"]) == (status, reason, [])
    assert not Trade.objects.exists()
    assert house("ETH", market) == (D("10"), 0)
    assert_invariants()


def test_the_book_fills_first_and_the_house_takes_the_remainder(market, trader):
    fund_house(market, base="10")
    maker = trader(ETH="0.1")
    taker = trader(USDT="5000")
    maker.order(side="sell", type="limit", quantity="0.1", price="2000.00")
    order = taker.order(side="buy", type="market", quantity="0.3").json()
    assert order["status"] == "filled"
    assert fills(order) == [("2000.00000000", "0.10000000", "book"), ("2010.00000000", "0.20000000", "house")]
    assert house("ETH", market) == (D("9.8"), 0)
    assert_invariants()


def test_fok_counts_house_capacity_exactly_like_the_fill(market, trader):
    fund_house(market, base="10")
    maker = trader(ETH="0.1")
    taker = trader(USDT="5000")
    ask = maker.order(side="sell", type="limit", quantity="0.1", price="2000.00").json()

    # book 0.1 + house 0.2487 (the 500 USD cap) = 0.3487 is all there is
    one_step_more = taker.order(side="buy", type="market", quantity="0.3488", time_in_force="FOK").json()
    assert (one_step_more["status"], one_step_more["status_reason"], one_step_more["fills"]) == (
        "expired",
        "fok_not_fillable",
        [],
    )
    assert house("ETH", market) == (D("10"), 0)
    assert Order.objects.get(pk=ask["id"]).status == "open"
    assert (taker.wallet("USDT").balance, taker.wallet("USDT").locked) == (D("5000"), 0)

    exact = taker.order(side="buy", type="market", quantity="0.3487", time_in_force="FOK").json()
    assert exact["status"] == "filled"
    assert fills(exact) == [("2000.00000000", "0.10000000", "book"), ("2010.00000000", "0.24870000", "house")]
    assert_invariants()


def test_fok_counts_house_inventory_exactly_like_the_fill(market, trader):
    fund_house(market, base="0.2")
    taker = trader(USDT="5000")
    refused = taker.order(side="buy", type="market", quantity="0.2001", time_in_force="FOK").json()
    assert (refused["status"], refused["status_reason"]) == ("expired", "fok_not_fillable")
    filled = taker.order(side="buy", type="market", quantity="0.2", time_in_force="FOK").json()
    assert (filled["status"], fills(filled)) == ("filled", [("2010.00000000", "0.20000000", "house")])
    assert house("ETH", market) == (0, 0)
    assert_invariants()


def test_an_ioc_market_order_takes_what_the_fok_would_not(market, trader):
    fund_house(market, base="10")
    taker = trader(USDT="5000")
    order = taker.order(side="buy", type="market", quantity="0.3", time_in_force="IOC").json()
    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (
        "expired",
        "no_liquidity",
        "0.24870000",
    )
    assert_invariants()


def test_house_and_liquidity_beyond_the_guard_expire_for_slippage(market, trader):
    fund_house(market, base="10")
    maker = trader(ETH="1")
    taker = trader(USDT="5000")
    maker.order(side="sell", type="limit", quantity="1", price="2200.00")
    order = taker.order(side="buy", type="market", quantity="0.3").json()
    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (
        "expired",
        "slippage_guard",
        "0.24870000",
    )
    assert_invariants()


def test_self_trade_prevention_that_stops_the_taker_stops_the_house_too(market, trader):
    fund_house(market, base="10")
    me = trader(ETH="1", USDT="5000")
    me.order(side="sell", type="limit", quantity="1", price="2000.00")
    stopped = me.order(side="buy", type="market", quantity="0.1", stp="expire_taker").json()
    assert (stopped["status"], stopped["status_reason"], stopped["fills"]) == ("expired", "self_trade_prevention", [])
    skipped = me.order(side="buy", type="market", quantity="0.1", stp="skip").json()
    assert (skipped["status"], fills(skipped)) == ("filled", [("2010.00000000", "0.10000000", "house")])
    assert_invariants()


def test_auto_fill_can_be_switched_off(market, trader, settings):
    settings.AUTO_FILL_ENABLED = False
    fund_house(market, base="10")
    taker = trader(USDT="5000")
    order = taker.order(side="buy", type="market", quantity="0.1").json()
    assert (order["status"], order["status_reason"], order["fills"]) == ("expired", "no_liquidity", [])
    assert_invariants()


def test_the_house_does_not_sell_below_the_books_bids_nor_buy_above_its_asks(market, trader):
    # The reference (2000) is stale: the book bids 2400. The house's 2010 offer would be
    # bought and sold straight on to that bid, 500 USD at a time, until the house's
    # inventory ran out; with the bid there, a market buy finds no house fill.
    fund_house(market, base="10", quote="5000")
    bidder = trader(USDT="10000")
    bid = bidder.order(side="buy", type="limit", quantity="1", price="2400.00").json()
    buyer = trader(USDT="1000")
    order = buyer.order(side="buy", type="market", quantity="0.1").json()
    assert (order["status"], order["status_reason"], order["fills"]) == ("expired", "no_liquidity", [])
    assert house("ETH", market) == (D("10"), 0)

    # The other side: an ask at 1600, under the house's 1990 bid.
    assert bidder.api.post(f"/api/orders/{bid['id']}/cancel").status_code == 200
    seller = trader(ETH="1")
    ask = seller.order(side="sell", type="limit", quantity="0.5", price="1600.00").json()
    order = trader(ETH="0.1").order(side="sell", type="market", quantity="0.1").json()
    assert (order["status"], order["status_reason"], order["fills"]) == ("expired", "no_liquidity", [])
    assert house("USDT", market) == (D("5000"), 0)

    # With the book no longer crossing the house's prices, the house fills again.
    assert seller.api.post(f"/api/orders/{ask['id']}/cancel").status_code == 200
    order = buyer.order(side="buy", type="market", quantity="0.1").json()
    assert fills(order) == [("2010.00000000", "0.10000000", "house")]
    assert_invariants()


# --- a market quoted in another asset: the cap is still MAX_AUTO_FILL_USD in dollars ---------
#
# ETH-BTC at reference 0.05 (tick 0.00001, step 0.001): the house sells at 0.05025 and buys
# at 0.04975. BTC is worth BTC-USDT's reference price (60000.00): 500 USD are 0.00833333 BTC
# (rounded down), which buy 0.165 ETH from the house and sell it 0.167. Before, the cap was
# 500 BTC (30 million dollars): the whole order filled, as far as the house's ETH went.


def eth_btc(*, btc_usdt: str | None = "60000.00"):
    if btc_usdt is not None:
        market_create("BTC-USDT", reference_price=btc_usdt)
    market = market_create(
        "ETH-BTC", price_tick="0.00001", quantity_step="0.001", min_quantity="0.001", reference_price="0.05000"
    )
    fund_house(market, base="1000", quote="100")
    return market


@pytest.mark.parametrize(("side", "cap", "price"), [("buy", "0.165", "0.05025"), ("sell", "0.167", "0.04975")])
def test_house_fill_on_a_btc_quoted_market_is_capped_in_dollars(db, trader, side, cap, price):
    market = eth_btc()
    taker = trader(ETH="10", BTC="1")
    order = taker.order(market="ETH-BTC", side=side, type="market", quantity="10").json()
    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (
        "expired",
        "no_liquidity",
        f"{D(cap):.8f}",
    )
    assert fills(order) == [(f"{D(price):.8f}", f"{D(cap):.8f}", "house")]
    trade = Trade.objects.get(market=market)
    dollars = trade.quote_amount * D("60000")
    assert dollars <= D(500) < (trade.quote_amount + trade.price * D("0.001")) * D("60000")
    assert_invariants()


def test_a_new_reference_price_of_btc_usdt_moves_the_eth_btc_cap_from_the_next_batch(db, trader, settings):
    settings.MAX_AUTO_FILL_USD = D(100)
    eth_btc()
    taker = trader(BTC="1")

    def bought() -> str:
        return taker.order(market="ETH-BTC", side="buy", type="market", quantity="10").json()["filled_quantity"]

    assert bought() == "0.03300000"  # 100 / 60000 = 0.00166666 BTC / 0.05025 = 0.0331...
    market_reference_price_set(symbol="BTC-USDT", price="30000.00", large_move=True)
    assert bought() == "0.06600000"  # 0.00333333 BTC / 0.05025 = 0.0663...
    assert_invariants()


@pytest.mark.parametrize("tif", ["IOC", "FOK"])
def test_no_house_fill_where_the_quote_asset_has_no_dollar_rate(db, trader, tif):
    """No BTC-USDT market: BTC has no dollar value on the platform, so the house does not
    fill on ETH-BTC (the order ends as when the house has nothing to give) until there is one."""
    market = eth_btc(btc_usdt=None)
    taker = trader(BTC="1")
    order = taker.order(market="ETH-BTC", side="buy", type="market", quantity="0.1", time_in_force=tif).json()
    reason = "no_liquidity" if tif == "IOC" else "fok_not_fillable"
    assert (order["status"], order["status_reason"], order["fills"]) == ("expired", reason, [])
    assert house("ETH", market) == (D("1000"), 0)

    market_create("BTC-USDT", reference_price="60000.00")  # read by the next batch
    order = taker.order(market="ETH-BTC", side="buy", type="market", quantity="0.1", time_in_force=tif).json()
    assert (order["status"], fills(order)) == ("filled", [("0.05025000", "0.10000000", "house")])
    assert_invariants()
