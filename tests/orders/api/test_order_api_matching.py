"""POST /api/orders against a book: price-time priority, fills at the maker's price, time in
force, every expiry reason, self-trade prevention, fees and what the ledger does with them.

Market ETH-USDT: tick 0.01, step 0.0001, reference 2000.00, so the slippage guard of a
market order is 2100.00 for a buy and 1900.00 for a sell. Fees: maker 8 bps, taker 12 bps."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest

from orders.models import Order, Trade
from orders.sequencer.transport import in_process_engine_reset
from orders.system_accounts import fee_account_user_id
from tests.factories import market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import wallet

pytestmark = pytest.mark.django_db

D = Decimal
MONEY = re.compile(r"^\d+\.\d{8}$")


def book(api, symbol: str = "ETH-USDT") -> dict[str, list[tuple[str, str, int]]]:
    body = api.get(f"/api/markets/{symbol}/book").json()
    return {side: [(lvl["price"], lvl["quantity"], lvl["orders"]) for lvl in body[side]] for side in ("bids", "asks")}


def state(order_id: str | int) -> tuple[str, str | None, Decimal]:
    order = Order.objects.get(pk=order_id)
    return order.status, order.status_reason, order.filled_quantity


def events(order: dict) -> list[tuple[str, str | None]]:
    return [(e["status"], e["reason"]) for e in order["events"]]


def fee_account_balance(market, asset: str = "USDT") -> Decimal:
    return wallet(fee_account_user_id(), asset, bucket=market.pk).balance


# --- priority and prices ---------------------------------------------------------------------


def test_price_time_priority_and_fills_at_the_maker_price(market, trader):
    first = trader(ETH="1")
    second = trader(ETH="1")
    better = trader(ETH="1")
    worse = trader(ETH="1")
    taker = trader(USDT="6000")
    a = first.order(side="sell", type="limit", quantity="1", price="2000.00").json()
    b = second.order(side="sell", type="limit", quantity="1", price="2000.00").json()
    c = better.order(side="sell", type="limit", quantity="1", price="1999.00").json()
    d = worse.order(side="sell", type="limit", quantity="1", price="2001.00").json()

    response = taker.order(side="buy", type="limit", quantity="2.5", price="2000.00")

    assert response.status_code == 201
    order = response.json()
    # Best price first (1999 although it arrived last), then the oldest at 2000; each at its own price.
    assert [(f["price"], f["quantity"], f["liquidity"], f["counterparty"]) for f in order["fills"]] == [
        ("1999.00000000", "1.00000000", "taker", "book"),
        ("2000.00000000", "1.00000000", "taker", "book"),
        ("2000.00000000", "0.50000000", "taker", "book"),
    ]
    assert [f["fee"] for f in order["fills"]] == ["2.39880000", "2.40000000", "1.20000000"]
    assert (order["status"], order["filled_quantity"], order["remaining_quantity"]) == (
        "filled",
        "2.50000000",
        "0.00000000",
    )
    assert order["average_price"] == "1999.60000000"  # (1999 + 2000 + 1000) / 2.5
    assert order["fee_paid"] == "5.99880000"
    trades = list(Trade.objects.order_by("id"))
    assert [t.maker_order_id for t in trades] == [int(c["id"]), int(a["id"]), int(b["id"])]

    assert state(c["id"]) == ("filled", None, D("1"))
    assert state(a["id"]) == ("filled", None, D("1"))
    assert state(b["id"]) == ("partially_filled", None, D("0.5"))
    assert state(d["id"]) == ("open", None, D("0"))
    assert book(taker.api)["asks"] == [("2000.00000000", "0.50000000", 1), ("2001.00000000", "1.00000000", 1)]

    # The buyer paid notional + taker fee and holds nothing locked; each maker got notional - 8 bps.
    assert (taker.wallet("USDT").balance, taker.wallet("USDT").locked) == (D("6000") - D("4999") - D("5.9988"), 0)
    assert taker.wallet("ETH").balance == D("2.5")
    assert better.wallet("USDT").balance == D("1999") - D("1.5992")
    assert first.wallet("USDT").balance == D("2000") - D("1.6")
    assert second.wallet("USDT").balance == D("1000") - D("0.8")
    assert (second.wallet("ETH").balance, second.wallet("ETH").locked) == (D("0.5"), D("0.5"))
    # Every fee went to the platform's fee account, in the sub-wallet of this market.
    assert fee_account_balance(market) == D("5.9988") + D("1.5992") + D("1.6") + D("0.8")
    assert_invariants()


def test_a_buy_lock_covers_the_worst_case_and_the_surplus_is_released(market, trader):
    maker = trader(ETH="1")
    taker = trader(USDT="2012.412")  # 1 x 2010 + 12 bps: exactly the lock
    maker.order(side="sell", type="limit", quantity="1", price="1990.00")
    order = taker.order(side="buy", type="limit", quantity="1", price="2010.00").json()
    assert (order["status"], order["fills"][0]["price"]) == ("filled", "1990.00000000")
    assert (taker.wallet("USDT").balance, taker.wallet("USDT").locked) == (D("2012.412") - D("1990") - D("2.388"), 0)
    assert Order.objects.get(pk=order["id"]).locked_amount == 0
    assert_invariants()


def test_a_resting_buy_holds_only_what_its_remainder_needs(market, trader):
    """A limit buy that fills part at better prices, then rests, holds the lock of its
    remainder at its price (notional + taker fee), no more; so does a resting buy after each
    fill as a maker (8 bps paid where 12 were held). The surplus was kept until the order
    ended: here 1,000 USDT of the taker's balance stayed unavailable behind 0.01 ETH."""
    seller, other = trader(ETH="10"), trader(ETH="1")
    buyer = trader(USDT="21025.2")  # 10 x 2100 + 12 bps: exactly the lock
    seller.order(side="sell", type="limit", quantity="9.99", price="2000.00")
    order = buyer.order(side="buy", type="limit", quantity="10", price="2100.00").json()
    assert (order["status"], order["remaining_quantity"]) == ("partially_filled", "0.01000000")
    spent = D("19980") + D("23.976")  # 9.99 x 2000 + 12 bps
    needed = D("21") + D("0.0252")  # 0.01 x 2100 + 12 bps
    assert Order.objects.get(pk=order["id"]).locked_amount == needed
    assert (buyer.wallet("USDT").balance, buyer.wallet("USDT").locked) == (D("21025.2") - spent, needed)
    # A maker fill of part of the rest: 8 bps paid, the lock of what remains kept, no more.
    other.order(side="sell", type="market", quantity="0.004")
    needed = D("12.6") + D("0.01512")  # 0.006 x 2100 + 12 bps
    spent += D("8.4") + D("0.00672")  # 0.004 x 2100 + 8 bps
    assert Order.objects.get(pk=order["id"]).locked_amount == needed
    assert (buyer.wallet("USDT").balance, buyer.wallet("USDT").locked) == (D("21025.2") - spent, needed)
    assert_invariants()


def test_a_selling_taker_pays_its_fee_out_of_the_proceeds(market, trader):
    buyer = trader(USDT="2002.4")
    seller = trader(ETH="1")
    bid = buyer.order(side="buy", type="limit", quantity="1", price="2000.00").json()
    assert buyer.wallet("USDT").locked == D("2002.4")
    order = seller.order(side="sell", type="market", quantity="1").json()
    assert (order["status"], order["fee_paid"]) == ("filled", "2.40000000")
    assert seller.wallet("USDT").balance == D("1997.6")
    assert (seller.wallet("ETH").balance, seller.wallet("ETH").locked) == (0, 0)
    # The maker paid 2000 + 1.6 out of its 2002.4 lock; the 0.8 left over is released.
    assert (buyer.wallet("USDT").balance, buyer.wallet("USDT").locked) == (D("0.8"), 0)
    assert Order.objects.get(pk=bid["id"]).fee_paid == D("1.6")
    assert fee_account_balance(market) == D("4.0")
    assert_invariants()


# --- time in force -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tif", "status", "reason", "filled", "bids"),
    [
        ("GTC", "partially_filled", None, "1.00000000", [("2000.00000000", "1.00000000", 1)]),
        ("IOC", "expired", "ioc_remainder", "1.00000000", []),
        ("FOK", "expired", "fok_not_fillable", "0.00000000", []),
    ],
)
def test_a_partial_fill_rests_only_for_gtc(market, trader, tif, status, reason, filled, bids):
    maker = trader(ETH="1")
    taker = trader(USDT="5000")
    ask = maker.order(side="sell", type="limit", quantity="1", price="2000.00").json()
    order = taker.order(side="buy", type="limit", quantity="2", price="2000.00", time_in_force=tif).json()

    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (status, reason, filled)
    assert D(order["remaining_quantity"]) == D("2") - D(order["filled_quantity"])
    assert events(order) == [("open", None), (status, reason)]
    assert book(taker.api)["bids"] == bids
    locked = Order.objects.get(pk=order["id"]).locked_amount
    if tif == "GTC":
        # What is still locked is exactly the lock of the remaining 1 @ 2000 (+ taker fee).
        assert locked == taker.wallet("USDT").locked == D("2002.4")
    else:
        assert locked == taker.wallet("USDT").locked == 0
    if tif == "FOK":
        assert state(ask["id"]) == ("open", None, 0)
        assert not Trade.objects.exists()
        assert taker.wallet("USDT").balance == D("5000")
    assert_invariants()


def test_ioc_that_fills_nothing_expires_with_ioc_remainder(market, trader):
    taker = trader(USDT="5000")
    order = taker.order(side="buy", type="limit", quantity="1", price="2000.00", time_in_force="IOC").json()
    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (
        "expired",
        "ioc_remainder",
        "0.00000000",
    )
    assert order["remaining_quantity"] == "1.00000000"
    assert taker.wallet("USDT").locked == 0
    assert_invariants()


def test_fok_fills_across_levels_or_not_at_all(market, trader):
    maker_a = trader(ETH="0.5")
    maker_b = trader(ETH="0.5")
    taker = trader(USDT="5000")
    maker_a.order(side="sell", type="limit", quantity="0.5", price="2000.00")
    maker_b.order(side="sell", type="limit", quantity="0.5", price="2001.00")

    too_much = taker.order(side="buy", type="limit", quantity="1.0001", price="2001.00", time_in_force="FOK").json()
    assert (too_much["status"], too_much["status_reason"], too_much["filled_quantity"], too_much["fills"]) == (
        "expired",
        "fok_not_fillable",
        "0.00000000",
        [],
    )
    assert not Trade.objects.exists()
    assert (taker.wallet("USDT").balance, taker.wallet("USDT").locked) == (D("5000"), 0)

    exact = taker.order(side="buy", type="limit", quantity="1", price="2001.00", time_in_force="FOK").json()
    assert (exact["status"], exact["filled_quantity"]) == ("filled", "1.00000000")
    assert [f["price"] for f in exact["fills"]] == ["2000.00000000", "2001.00000000"]
    assert_invariants()


def test_fok_limited_by_its_price_is_not_fillable(market, trader):
    maker = trader(ETH="2")
    taker = trader(USDT="5000")
    maker.order(side="sell", type="limit", quantity="1", price="2000.00")
    maker.order(side="sell", type="limit", quantity="1", price="2000.01")
    order = taker.order(side="buy", type="limit", quantity="2", price="2000.00", time_in_force="FOK").json()
    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (
        "expired",
        "fok_not_fillable",
        "0.00000000",
    )
    assert book(taker.api)["asks"] == [("2000.00000000", "1.00000000", 1), ("2000.01000000", "1.00000000", 1)]
    assert_invariants()


# --- market orders and the slippage guard --------------------------------------------------------


def test_market_order_without_any_liquidity_expires_no_liquidity(market, trader):
    taker = trader(USDT="5000")
    order = taker.order(side="buy", type="market", quantity="1").json()
    assert (order["status"], order["status_reason"], order["remaining_quantity"]) == (
        "expired",
        "no_liquidity",
        "1.00000000",
    )
    assert events(order) == [("open", None), ("expired", "no_liquidity")]
    assert taker.wallet("USDT").locked == 0
    assert_invariants()


@pytest.mark.parametrize(
    ("side", "maker_side", "inside", "outside"),
    [("buy", "sell", "2100.00", "2100.01"), ("sell", "buy", "1900.00", "1899.99")],
)
def test_the_slippage_guard_is_inclusive_and_liquidity_beyond_it_is_reported(
    market, trader, side, maker_side, inside, outside
):
    maker = trader(ETH="2", USDT="5000")
    taker = trader(ETH="2", USDT="5000")
    beyond = maker.order(side=maker_side, type="limit", quantity="1", price=outside).json()

    blocked = taker.order(side=side, type="market", quantity="1").json()
    assert (blocked["status"], blocked["status_reason"], blocked["filled_quantity"]) == (
        "expired",
        "slippage_guard",
        "0.00000000",
    )
    assert state(beyond["id"]) == ("open", None, 0)

    maker.order(side=maker_side, type="limit", quantity="0.4", price=inside)
    partial = taker.order(side=side, type="market", quantity="1").json()
    assert (partial["status"], partial["status_reason"]) == ("expired", "slippage_guard")
    assert [(f["price"], f["quantity"]) for f in partial["fills"]] == [(f"{inside}000000", "0.40000000")]
    assert (partial["filled_quantity"], partial["remaining_quantity"]) == ("0.40000000", "0.60000000")
    assert taker.wallet("USDT").locked == taker.wallet("ETH").locked == 0
    assert_invariants()


def test_market_order_that_fills_completely(market, trader):
    maker = trader(ETH="1")
    taker = trader(USDT="2102.52")  # exactly the market buy lock of 1 at the guard price
    maker.order(side="sell", type="limit", quantity="1", price="2050.00")
    order = taker.order(side="buy", type="market", quantity="1").json()
    assert (order["status"], order["status_reason"], order["time_in_force"]) == ("filled", None, "IOC")
    assert events(order) == [("open", None), ("filled", None)]
    assert order["filled_at"] == order["events"][-1]["at"]
    assert (taker.wallet("USDT").balance, taker.wallet("USDT").locked) == (D("2102.52") - D("2050") - D("2.46"), 0)
    assert_invariants()


def test_own_orders_are_not_liquidity_for_a_market_order(market, trader):
    me = trader(ETH="1", USDT="5000")
    own_inside = me.order(side="sell", type="limit", quantity="0.5", price="2000.00").json()
    own_beyond = me.order(side="sell", type="limit", quantity="0.5", price="2200.00").json()
    order = me.order(side="buy", type="market", quantity="1").json()
    assert (order["status"], order["status_reason"], order["filled_quantity"]) == (
        "expired",
        "no_liquidity",
        "0.00000000",
    )
    assert state(own_inside["id"])[0] == state(own_beyond["id"])[0] == "open"
    assert_invariants()


# --- self-trade prevention -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stp", "taker_state", "own_state", "other_filled", "taker_locked"),
    [
        # passes over its own order, trades with the other one, rests the remainder
        ("skip", ("partially_filled", None, D("1")), ("open", None), D("1"), D("2003.4012")),
        # stops at its own order, before anything else
        ("expire_taker", ("expired", "self_trade_prevention", D("0")), ("open", None), D("0"), D("0")),
        # cancels its own order and goes on
        (
            "expire_maker",
            ("partially_filled", None, D("1")),
            ("expired", "self_trade_prevention"),
            D("1"),
            D("2003.4012"),
        ),
        (
            "expire_both",
            ("expired", "self_trade_prevention", D("0")),
            ("expired", "self_trade_prevention"),
            D("0"),
            D("0"),
        ),
    ],
)
def test_self_trade_prevention_modes(market, trader, stp, taker_state, own_state, other_filled, taker_locked):
    me = trader(ETH="1", USDT="5000")
    other = trader(ETH="1")
    own = me.order(side="sell", type="limit", quantity="1", price="2000.00").json()
    theirs = other.order(side="sell", type="limit", quantity="1", price="2001.00").json()

    order = me.order(side="buy", type="limit", quantity="2", price="2001.00", stp=stp).json()

    assert order["stp"] == stp
    assert state(order["id"]) == taker_state
    assert state(own["id"])[:2] == own_state
    assert state(theirs["id"])[2] == other_filled
    # the remaining 1 @ 2001 + 12 bps stays locked only where the order rests
    assert Order.objects.get(pk=order["id"]).locked_amount == taker_locked
    if own_state[0] == "expired":
        assert events(me.api.get(f"/api/orders/{own['id']}").json()) == [
            ("open", None),
            ("expired", "self_trade_prevention"),
        ]
        assert me.wallet("ETH").locked == 0
    else:
        assert me.wallet("ETH").locked == D("1")
    assert not Trade.objects.filter(taker_user=me.user, maker_user=me.user).exists()
    assert_invariants()


def test_expire_taker_keeps_the_fills_made_before_reaching_its_own_order(market, trader):
    me = trader(ETH="1", USDT="5000")
    other = trader(ETH="1")
    other.order(side="sell", type="limit", quantity="1", price="1999.00")
    me.order(side="sell", type="limit", quantity="1", price="2000.00")
    order = me.order(side="buy", type="limit", quantity="2", price="2000.00", stp="expire_taker").json()
    assert (order["status"], order["status_reason"]) == ("expired", "self_trade_prevention")
    assert (order["filled_quantity"], order["remaining_quantity"]) == ("1.00000000", "1.00000000")
    assert me.wallet("USDT").locked == 0
    assert_invariants()


def test_skip_limit_order_crossing_only_own_orders_rests(market, trader):
    me = trader(ETH="1", USDT="5000")
    me.order(side="sell", type="limit", quantity="1", price="2000.00")
    order = me.order(side="buy", type="limit", quantity="1", price="2000.00").json()
    assert (order["status"], order["status_reason"], order["fills"]) == ("open", None, [])
    assert book(me.api) == {
        "bids": [("2000.00000000", "1.00000000", 1)],
        "asks": [("2000.00000000", "1.00000000", 1)],
    }
    assert not Trade.objects.exists()
    assert_invariants()


def test_stp_on_a_market_order(market, trader):
    me = trader(ETH="1", USDT="5000")
    me.order(side="sell", type="limit", quantity="1", price="2000.00")
    skipped = me.order(side="buy", type="market", quantity="1", stp="skip").json()
    assert (skipped["status"], skipped["status_reason"]) == ("expired", "no_liquidity")
    stopped = me.order(side="buy", type="market", quantity="1", stp="expire_taker").json()
    assert (stopped["status"], stopped["status_reason"]) == ("expired", "self_trade_prevention")
    assert_invariants()


def test_fok_that_cannot_fill_expires_no_maker_even_with_expire_maker(market, trader):
    me = trader(ETH="1", USDT="5000")
    own = me.order(side="sell", type="limit", quantity="1", price="2000.00").json()
    order = me.order(side="buy", type="limit", quantity="1", price="2000.00", time_in_force="FOK", stp="expire_maker")
    assert (order.json()["status"], order.json()["status_reason"]) == ("expired", "fok_not_fillable")
    assert state(own["id"]) == ("open", None, 0)
    assert_invariants()


# --- fees ------------------------------------------------------------------------------------------


def test_fees_are_rounded_down_to_8_places_and_notional_is_exact(market, trader):
    maker = trader(ETH="0.0001")
    taker = trader(USDT="1")
    maker.order(side="sell", type="limit", quantity="0.0001", price="2000.49")
    order = taker.order(side="buy", type="limit", quantity="0.0001", price="2000.49").json()
    # notional 0.200049; taker 12 bps = 0.0002400588 -> 0.00024005 (not ...06); maker 0.0001600392 -> 0.00016003
    trade = Trade.objects.get()
    assert (trade.quote_amount, trade.taker_fee, trade.maker_fee) == (D("0.200049"), D("0.00024005"), D("0.00016003"))
    assert order["fills"][0]["fee"] == "0.00024005"
    assert taker.wallet("USDT").balance == D("1") - D("0.200049") - D("0.00024005")
    assert maker.wallet("USDT").balance == D("0.200049") - D("0.00016003")
    assert fee_account_balance(market) == D("0.00040008")
    assert_invariants()


@pytest.mark.parametrize(
    ("ttx", "taker_fee"),
    [
        (None, "2.40000000"),
        ("99.99999999", "2.40000000"),
        ("100", "2.16000000"),  # bronze: 10% off
        ("1000", "1.92000000"),  # silver: 20%
        ("10000", "1.56000000"),  # gold: 35%
        ("100000", "1.20000000"),  # platinum: 50%
        ("1000000", "0.72000000"),  # diamond: 70%
    ],
)
def test_ttx_holders_get_a_fee_discount(market, trader, ttx, taker_fee):
    maker = trader(ETH="1", TTX="1000")  # silver maker: 1.6 x 0.8
    taker = trader(USDT="3000", **({"TTX": ttx} if ttx else {}))
    maker.order(side="sell", type="limit", quantity="1", price="2000.00")
    order = taker.order(side="buy", type="limit", quantity="1", price="2000.00").json()
    assert order["fee_paid"] == taker_fee
    assert Trade.objects.get().maker_fee == D("1.28")
    assert taker.wallet("USDT").balance == D("3000") - D("2000") - D(taker_fee)
    assert fee_account_balance(market) == D(taker_fee) + D("1.28")
    assert_invariants()


def test_fee_account_is_bucketed_per_market(market, trader):
    btc = market_create("BTC-USDT", reference_price="30000.00")
    maker = trader(ETH="1", BTC="1")
    taker = trader(USDT="40000")
    maker.order(side="sell", type="limit", quantity="1", price="2000.00")
    maker.order(market="BTC-USDT", side="sell", type="limit", quantity="0.1", price="30000.00")
    taker.order(side="buy", type="market", quantity="1")
    taker.order(market="BTC-USDT", side="buy", type="market", quantity="0.1")
    assert fee_account_balance(market) == D("2.4") + D("1.6")
    assert fee_account_balance(btc) == D("3.6") + D("2.4")
    assert wallet(fee_account_user_id(), "USDT").balance == 0
    assert_invariants()


def _fees_raised_and_engine_restarted(settings) -> None:
    """The operator raises both fees between two runs of the engine (taker 12 -> 30 bps,
    maker 8 -> 20): buys that rested before hold the taker fee at 12 bps."""
    settings.TAKER_FEE_BPS, settings.MAKER_FEE_BPS = 30, 20
    in_process_engine_reset()


@pytest.mark.parametrize(
    ("funds", "maker_fee", "maker_balance"),
    [
        # 1.6 beyond the lock is available: the maker pays its full 20 bps (4.00).
        ("3000", "4.00000000", D("3000") - D("2000") - D("4")),
        # Only 1.0 beyond its lock: it pays what it has, 2.4 + 1.0 (the fee capped).
        ("2003.4", "3.40000000", D("0")),
        # Nothing beyond its lock: the fee is capped at the 2.4 it locked.
        ("2002.4", "2.40000000", D("0")),
    ],
)
def test_a_buy_that_rested_under_lower_fees_never_fails_the_taker(
    market, trader, settings, funds, maker_fee, maker_balance
):
    """A resting buy locked notional + the taker fee at the rates of its placing. When the
    maker fee rose above that since, the maker's fee beyond its lock is taken from its
    available quote, and where that is not enough it is capped at what the maker has: the
    taker's fill goes through (it was refused and the taker ended in `error`)."""
    buyer = trader(USDT=funds)
    bid = buyer.order(side="buy", type="limit", quantity="1", price="2000.00").json()
    assert buyer.wallet("USDT").locked == D("2002.4")  # 2000 + 12 bps
    _fees_raised_and_engine_restarted(settings)
    seller = trader(ETH="1")
    order = seller.order(side="sell", type="market", quantity="1").json()
    assert (order["status"], order["fee_paid"]) == ("filled", "6.00000000")  # 30 bps
    trade = Trade.objects.get()
    assert (trade.taker_fee, str(trade.maker_fee)) == (D("6"), maker_fee)
    assert Order.objects.get(pk=bid["id"]).status == "filled"
    assert (buyer.wallet("USDT").balance, buyer.wallet("USDT").locked) == (maker_balance, 0)
    assert buyer.wallet("ETH").balance == 1
    assert seller.wallet("USDT").balance == D("2000") - D("6")
    assert fee_account_balance(market) == D("6") + D(maker_fee)
    assert_invariants()


def test_a_lock_short_of_the_raised_maker_fee_keeps_the_notional_of_the_remainder(market, trader, settings):
    """Filled in parts, such a buy pays each part's fee out of its lock only as far as the
    lock stays enough for the notional of its remainder: the first half pays its 2.00 in
    full (the lock held 2.4 of fee), the second half gets what is left, 0.40."""
    buyer, other = trader(USDT="2002.4"), trader(USDT="1000")
    bid = buyer.order(side="buy", type="limit", quantity="1", price="2000.00").json()
    other.order(side="buy", type="limit", quantity="0.1", price="1990.00")  # another lock of the same asset
    _fees_raised_and_engine_restarted(settings)
    seller = trader(ETH="1")
    first = seller.order(side="sell", type="limit", quantity="0.5", price="2000.00").json()
    assert first["status"] == "filled"
    resting = Order.objects.get(pk=bid["id"])
    assert (resting.status, resting.fee_paid, resting.locked_amount) == ("partially_filled", D("2"), D("1000.4"))
    second = seller.order(side="sell", type="limit", quantity="0.5", price="2000.00").json()
    assert second["status"] == "filled"
    resting.refresh_from_db()
    assert (resting.status, resting.fee_paid, resting.locked_amount) == ("filled", D("2.4"), 0)
    assert [t.maker_fee for t in Trade.objects.order_by("id")] == [D("2"), D("0.4")]
    assert (buyer.wallet("USDT").balance, buyer.wallet("USDT").locked) == (0, 0)
    assert other.wallet("USDT").locked == D("199") + D("0.2388")  # its own lock (0.1 x 1990 + 12 bps), untouched
    assert_invariants(fee_rates_changed=True)


# --- the order record ----------------------------------------------------------------------------


def test_every_transition_is_an_event_with_its_time(market, trader):
    maker = trader(ETH="1")
    taker_1 = trader(USDT="5000")
    taker_2 = trader(USDT="5000")
    ask = maker.order(side="sell", type="limit", quantity="1", price="2000.00").json()
    taker_1.order(side="buy", type="market", quantity="0.4")
    taker_2.order(side="buy", type="market", quantity="0.6")

    order = maker.api.get(f"/api/orders/{ask['id']}").json()
    assert events(order) == [("open", None), ("partially_filled", None), ("filled", None)]
    times = [datetime.fromisoformat(e["at"]) for e in order["events"]]
    assert times == sorted(times)
    assert times[0] < times[2]
    assert order["created_at"] == order["events"][0]["at"]
    assert order["filled_at"] == order["updated_at"] == order["events"][-1]["at"]
    assert [(f["quantity"], f["liquidity"], f["fee"]) for f in order["fills"]] == [
        ("0.40000000", "maker", "0.64000000"),
        ("0.60000000", "maker", "0.96000000"),
    ]
    assert (order["remaining_quantity"], order["average_price"]) == ("0.00000000", "2000.00000000")
    assert_invariants()


def test_amounts_are_decimal_strings(market, trader):
    maker = trader(ETH="1")
    taker = trader(USDT="5000")
    maker.order(side="sell", type="limit", quantity="0.3", price="1999.99")
    order = taker.order(side="buy", type="limit", quantity="1", price="2000.00", time_in_force="IOC").json()
    for key in ("price", "quantity", "filled_quantity", "remaining_quantity", "average_price", "fee_paid"):
        assert MONEY.match(order[key]), (key, order[key])
    for fill in order["fills"]:
        for key in ("price", "quantity", "fee"):
            assert MONEY.match(fill[key]), (key, fill[key])
    assert isinstance(order["fills"][0]["trade_id"], str)
    assert_invariants()
