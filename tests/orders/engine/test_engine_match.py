"""Unit tests of `orders.engine.match`, one rule of the contract at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal

import pytest

from core.compiled import compiled_in_use
from orders.engine import (
    ExpiryReason,
    Fill,
    HouseInventory,
    MarketRules,
    MatchResult,
    Outcome,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TakerOrder,
    TimeInForce,
    match,
)

D = Decimal
TAKER_OWNER = 1
OTHER = 2
THIRD = 3


def rules(
    *,
    reference: str = "100",
    bps: int = 100,
    tick: str = "0.01",
    step: str = "0.001",
    house: HouseInventory | None = None,
) -> MarketRules:
    return MarketRules(
        reference_price=D(reference),
        max_slippage_bps=bps,
        price_tick=D(tick),
        quantity_step=D(step),
        house=house,
    )


def house(
    *,
    base: str = "1000",
    quote: str = "1000000",
    max_notional: str = "1000000",
    percent: str = "0.5",
    taker_side_best: str | None = None,
) -> HouseInventory:
    return HouseInventory(
        base_available=D(base),
        quote_available=D(quote),
        max_notional=D(max_notional),
        slippage_percent=D(percent),
        taker_side_best=None if taker_side_best is None else D(taker_side_best),
    )


def maker(order_id: int, price: str, remaining: str, *, owner: int = OTHER) -> RestingOrder:
    return RestingOrder(id=order_id, owner_id=owner, price=D(price), remaining=D(remaining))


def taker(
    side: Side,
    quantity: str,
    *,
    limit: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    stp: SelfTradePrevention = SelfTradePrevention.SKIP,
    owner: int = TAKER_OWNER,
) -> TakerOrder:
    return TakerOrder(
        owner_id=owner,
        side=side,
        quantity=D(quantity),
        limit_price=None if limit is None else D(limit),
        time_in_force=tif,
        stp=stp,
    )


def market(
    side: Side,
    quantity: str,
    *,
    tif: TimeInForce = TimeInForce.IOC,
    stp: SelfTradePrevention = SelfTradePrevention.SKIP,
) -> TakerOrder:
    return taker(side, quantity, limit=None, tif=tif, stp=stp)


def fills_of(result: MatchResult) -> list[tuple[int | None, Decimal, Decimal]]:
    return [(fill.maker_id, fill.price, fill.quantity) for fill in result.fills]


def book_that_raises_after(makers: Sequence[RestingOrder], allowed: int) -> Iterator[RestingOrder]:
    """A lazy book that fails the test if the engine pulls more than `allowed` makers."""
    yield from makers[:allowed]
    raise AssertionError(f"engine pulled more than {allowed} makers")


# --- price-time priority and fill prices -------------------------------------------------


def test_buy_fills_best_price_first_then_oldest_at_maker_prices() -> None:
    asks = [maker(1, "100", "1"), maker(2, "100", "1", owner=THIRD), maker(3, "100.5", "5")]
    result = match(taker=taker(Side.BUY, "2.5", limit="101"), makers=asks, rules=rules())
    assert fills_of(result) == [(1, D("100"), D("1")), (2, D("100"), D("1")), (3, D("100.5"), D("0.5"))]
    assert [fill.maker_owner_id for fill in result.fills] == [OTHER, THIRD, OTHER]
    assert result.outcome is Outcome.FILLED
    assert result.reason is None
    assert result.filled_quantity == D("2.5")
    assert result.remaining_quantity == 0
    assert result.makers_examined == 3


def test_sell_walks_bids_downwards_and_fills_at_the_bid_price() -> None:
    bids = [maker(1, "99", "1"), maker(2, "98", "1"), maker(3, "97", "1")]
    result = match(taker=taker(Side.SELL, "2", limit="97.5"), makers=bids, rules=rules())
    assert fills_of(result) == [(1, D("99"), D("1")), (2, D("98"), D("1"))]
    assert result.outcome is Outcome.FILLED


def test_fill_price_is_the_makers_not_the_takers_limit() -> None:
    result = match(taker=taker(Side.BUY, "1", limit="150"), makers=[maker(1, "100", "3")], rules=rules())
    assert fills_of(result) == [(1, D("100"), D("1"))]
    assert result.fills[0].notional == D("100")


def test_partial_maker_fill_takes_min_of_remainders() -> None:
    result = match(taker=taker(Side.BUY, "0.25", limit="100"), makers=[maker(1, "100", "3")], rules=rules())
    assert fills_of(result) == [(1, D("100"), D("0.25"))]
    assert result.remaining_quantity == 0


def test_limit_boundary_is_inclusive_for_buy_and_sell() -> None:
    buy = match(taker=taker(Side.BUY, "1", limit="100"), makers=[maker(1, "100", "1")], rules=rules())
    sell = match(taker=taker(Side.SELL, "1", limit="100"), makers=[maker(1, "100", "1")], rules=rules())
    assert buy.outcome is Outcome.FILLED
    assert sell.outcome is Outcome.FILLED


def test_out_of_order_book_is_refused() -> None:
    asks = [maker(1, "101", "1"), maker(2, "100", "1")]
    with pytest.raises(ValueError, match="priority order"):
        match(taker=taker(Side.BUY, "2", limit="101"), makers=asks, rules=rules())


# --- time in force -----------------------------------------------------------------------


def test_gtc_limit_remainder_rests_after_partial_fill() -> None:
    asks = [maker(1, "100", "1"), maker(2, "102", "1")]
    result = match(taker=taker(Side.BUY, "3", limit="101"), makers=asks, rules=rules())
    assert fills_of(result) == [(1, D("100"), D("1"))]
    assert result.outcome is Outcome.REST
    assert result.reason is None
    assert result.filled_quantity == D("1")
    assert result.remaining_quantity == D("2")
    assert result.makers_examined == 2


def test_gtc_limit_that_does_not_cross_rests_untouched() -> None:
    result = match(taker=taker(Side.SELL, "1", limit="105"), makers=[maker(1, "104", "1")], rules=rules())
    assert result.fills == ()
    assert result.outcome is Outcome.REST
    assert result.remaining_quantity == D("1")


def test_ioc_limit_remainder_expires() -> None:
    asks = [maker(1, "100", "1"), maker(2, "102", "1")]
    result = match(taker=taker(Side.BUY, "3", limit="101", tif=TimeInForce.IOC), makers=asks, rules=rules())
    assert fills_of(result) == [(1, D("100"), D("1"))]
    assert result.outcome is Outcome.EXPIRED
    assert result.reason is ExpiryReason.IOC_REMAINDER
    assert result.remaining_quantity == D("2")


def test_ioc_limit_fully_filled_is_filled() -> None:
    result = match(
        taker=taker(Side.BUY, "1", limit="101", tif=TimeInForce.IOC),
        makers=[maker(1, "100", "2")],
        rules=rules(),
    )
    assert result.outcome is Outcome.FILLED
    assert result.reason is None


def test_fok_limit_fills_exactly_across_levels() -> None:
    asks = [maker(1, "100", "1"), maker(2, "100.5", "2")]
    result = match(taker=taker(Side.BUY, "3", limit="100.5", tif=TimeInForce.FOK), makers=asks, rules=rules())
    assert fills_of(result) == [(1, D("100"), D("1")), (2, D("100.5"), D("2"))]
    assert result.outcome is Outcome.FILLED


def test_fok_limit_not_fillable_does_nothing() -> None:
    asks = [maker(1, "100", "1"), maker(2, "100.5", "2"), maker(3, "102", "10")]
    result = match(taker=taker(Side.BUY, "4", limit="101", tif=TimeInForce.FOK), makers=asks, rules=rules())
    assert result.fills == ()
    assert result.expired_maker_ids == ()
    assert result.outcome is Outcome.EXPIRED
    assert result.reason is ExpiryReason.FOK_NOT_FILLABLE
    assert result.filled_quantity == 0
    assert result.remaining_quantity == D("4")
    assert result.makers_examined == 3


def test_fok_not_fillable_discards_maker_expiries_too() -> None:
    asks = [maker(1, "100", "1", owner=TAKER_OWNER), maker(2, "100", "1")]
    result = match(
        taker=taker(Side.BUY, "2", limit="100", tif=TimeInForce.FOK, stp=SelfTradePrevention.EXPIRE_MAKER),
        makers=asks,
        rules=rules(),
    )
    assert result.fills == ()
    assert result.expired_maker_ids == ()
    assert result.reason is ExpiryReason.FOK_NOT_FILLABLE


# --- market orders and the slippage guard ------------------------------------------------


def test_market_buy_stops_at_the_guard_and_reports_slippage() -> None:
    # reference 100, 100 bps -> nothing above 101 may fill.
    asks = [maker(1, "100", "1"), maker(2, "101", "1"), maker(3, "101.01", "5")]
    result = match(taker=market(Side.BUY, "3"), makers=asks, rules=rules())
    assert fills_of(result) == [(1, D("100"), D("1")), (2, D("101"), D("1"))]
    assert result.outcome is Outcome.EXPIRED
    assert result.reason is ExpiryReason.SLIPPAGE_GUARD
    assert result.remaining_quantity == D("1")
    assert result.makers_examined == 3


def test_market_sell_stops_at_the_lower_guard() -> None:
    # reference 100, 250 bps -> nothing below 97.5 may fill.
    bids = [maker(1, "99", "1"), maker(2, "97.5", "1"), maker(3, "97.49", "5")]
    result = match(taker=market(Side.SELL, "5"), makers=bids, rules=rules(bps=250))
    assert fills_of(result) == [(1, D("99"), D("1")), (2, D("97.5"), D("1"))]
    assert result.reason is ExpiryReason.SLIPPAGE_GUARD


def test_market_on_empty_book_expires_for_no_liquidity() -> None:
    result = match(taker=market(Side.BUY, "1"), makers=[], rules=rules())
    assert result.fills == ()
    assert result.outcome is Outcome.EXPIRED
    assert result.reason is ExpiryReason.NO_LIQUIDITY
    assert result.makers_examined == 0


def test_market_exhausting_the_book_within_the_guard_is_no_liquidity() -> None:
    result = match(taker=market(Side.SELL, "3"), makers=[maker(1, "99.5", "1")], rules=rules())
    assert fills_of(result) == [(1, D("99.5"), D("1"))]
    assert result.reason is ExpiryReason.NO_LIQUIDITY
    assert result.remaining_quantity == D("2")


def test_own_orders_beyond_the_guard_are_not_liquidity() -> None:
    asks = [
        maker(1, "100", "1"),
        maker(2, "105", "1", owner=TAKER_OWNER),
        maker(3, "106", "1", owner=TAKER_OWNER),
    ]
    result = match(taker=market(Side.BUY, "2"), makers=asks, rules=rules())
    assert result.reason is ExpiryReason.NO_LIQUIDITY
    assert result.makers_examined == 3


def test_others_liquidity_behind_own_orders_beyond_the_guard_is_reported() -> None:
    asks = [maker(1, "105", "1", owner=TAKER_OWNER), maker(2, "106", "1")]
    result = match(taker=market(Side.BUY, "2"), makers=asks, rules=rules())
    assert result.fills == ()
    assert result.reason is ExpiryReason.SLIPPAGE_GUARD


def test_zero_slippage_market_only_fills_at_the_reference() -> None:
    asks = [maker(1, "100", "1"), maker(2, "100.01", "1")]
    result = match(taker=market(Side.BUY, "2"), makers=asks, rules=rules(bps=0))
    assert fills_of(result) == [(1, D("100"), D("1"))]
    assert result.reason is ExpiryReason.SLIPPAGE_GUARD


def test_market_fok_inside_guard_fills_and_beyond_guard_does_nothing() -> None:
    asks = [maker(1, "100", "1"), maker(2, "102", "5")]
    ok = match(taker=market(Side.BUY, "1", tif=TimeInForce.FOK), makers=asks, rules=rules())
    refused = match(taker=market(Side.BUY, "2", tif=TimeInForce.FOK), makers=asks, rules=rules())
    assert ok.outcome is Outcome.FILLED
    assert fills_of(ok) == [(1, D("100"), D("1"))]
    assert refused.fills == ()
    assert refused.reason is ExpiryReason.FOK_NOT_FILLABLE


# --- self-trade prevention ---------------------------------------------------------------


def own_then_other() -> list[RestingOrder]:
    return [maker(1, "100", "1"), maker(2, "100", "1", owner=TAKER_OWNER), maker(3, "100.5", "2")]


def test_stp_skip_passes_over_own_maker_and_continues() -> None:
    result = match(
        taker=taker(Side.BUY, "2", limit="101", stp=SelfTradePrevention.SKIP),
        makers=own_then_other(),
        rules=rules(),
    )
    assert fills_of(result) == [(1, D("100"), D("1")), (3, D("100.5"), D("1"))]
    assert result.expired_maker_ids == ()
    assert result.outcome is Outcome.FILLED


def test_stp_skip_gtc_limit_crossing_only_own_makers_rests() -> None:
    asks = [maker(1, "100", "1", owner=TAKER_OWNER), maker(2, "100.5", "1", owner=TAKER_OWNER)]
    result = match(taker=taker(Side.BUY, "1", limit="101"), makers=asks, rules=rules())
    assert result.fills == ()
    assert result.expired_maker_ids == ()
    assert result.outcome is Outcome.REST
    assert result.remaining_quantity == D("1")


def test_stp_expire_taker_keeps_earlier_fills_and_expires_the_rest() -> None:
    result = match(
        taker=taker(Side.BUY, "3", limit="101", stp=SelfTradePrevention.EXPIRE_TAKER),
        makers=own_then_other(),
        rules=rules(),
    )
    assert fills_of(result) == [(1, D("100"), D("1"))]
    assert result.expired_maker_ids == ()
    assert result.outcome is Outcome.EXPIRED
    assert result.reason is ExpiryReason.SELF_TRADE_PREVENTION
    assert result.remaining_quantity == D("2")
    assert result.makers_examined == 2


def test_stp_expire_taker_on_gtc_does_not_rest() -> None:
    asks = [maker(1, "100", "1", owner=TAKER_OWNER)]
    result = match(
        taker=taker(Side.BUY, "1", limit="101", stp=SelfTradePrevention.EXPIRE_TAKER),
        makers=asks,
        rules=rules(),
    )
    assert result.outcome is Outcome.EXPIRED
    assert result.reason is ExpiryReason.SELF_TRADE_PREVENTION


def test_stp_expire_maker_expires_it_and_continues() -> None:
    result = match(
        taker=taker(Side.BUY, "3", limit="101", stp=SelfTradePrevention.EXPIRE_MAKER),
        makers=own_then_other(),
        rules=rules(),
    )
    assert fills_of(result) == [(1, D("100"), D("1")), (3, D("100.5"), D("2"))]
    assert result.expired_maker_ids == (2,)
    assert result.outcome is Outcome.FILLED


def test_stp_expire_both_expires_maker_and_taker_remainder() -> None:
    result = match(
        taker=market(Side.BUY, "3", stp=SelfTradePrevention.EXPIRE_BOTH),
        makers=own_then_other(),
        rules=rules(house=house()),
    )
    assert fills_of(result) == [(1, D("100"), D("1"))]
    assert result.expired_maker_ids == (2,)
    assert result.outcome is Outcome.EXPIRED
    assert result.reason is ExpiryReason.SELF_TRADE_PREVENTION
    assert result.house_fill is None  # the house only serves a taker that is still walking


def test_stp_only_applies_to_makers_that_would_trade() -> None:
    asks = [maker(1, "100", "1"), maker(2, "102", "1", owner=TAKER_OWNER)]
    result = match(
        taker=taker(Side.BUY, "2", limit="101", stp=SelfTradePrevention.EXPIRE_BOTH),
        makers=asks,
        rules=rules(),
    )
    assert result.expired_maker_ids == ()
    assert result.outcome is Outcome.REST


@pytest.mark.parametrize("stp", [SelfTradePrevention.EXPIRE_TAKER, SelfTradePrevention.EXPIRE_BOTH])
def test_fok_hitting_taker_expiring_stp_is_not_fillable(stp: SelfTradePrevention) -> None:
    result = match(
        taker=taker(Side.BUY, "2", limit="101", tif=TimeInForce.FOK, stp=stp),
        makers=own_then_other(),
        rules=rules(),
    )
    assert result.fills == ()
    assert result.expired_maker_ids == ()
    assert result.reason is ExpiryReason.FOK_NOT_FILLABLE


def test_fok_completing_before_the_own_maker_is_filled() -> None:
    result = match(
        taker=taker(Side.BUY, "1", limit="101", tif=TimeInForce.FOK, stp=SelfTradePrevention.EXPIRE_TAKER),
        makers=own_then_other(),
        rules=rules(),
    )
    assert result.outcome is Outcome.FILLED
    assert fills_of(result) == [(1, D("100"), D("1"))]


@pytest.mark.parametrize(("stp", "expired"), [(SelfTradePrevention.SKIP, ()), (SelfTradePrevention.EXPIRE_MAKER, (2,))])
def test_fok_completes_past_own_maker_with_continuing_stp(stp: SelfTradePrevention, expired: tuple[int, ...]) -> None:
    result = match(
        taker=taker(Side.BUY, "3", limit="101", tif=TimeInForce.FOK, stp=stp),
        makers=own_then_other(),
        rules=rules(),
    )
    assert result.outcome is Outcome.FILLED
    assert fills_of(result) == [(1, D("100"), D("1")), (3, D("100.5"), D("2"))]
    assert result.expired_maker_ids == expired


# --- the house ---------------------------------------------------------------------------


def test_house_fills_buy_remainder_at_price_rounded_up_to_tick() -> None:
    # 100.003 * 1.005 = 100.503015 -> 100.51 (up, against the taker).
    result = match(
        taker=market(Side.BUY, "2"),
        makers=[maker(1, "100", "0.5")],
        rules=rules(reference="100.003", house=house(percent="0.5")),
    )
    assert fills_of(result) == [(1, D("100"), D("0.5")), (None, D("100.51"), D("1.5"))]
    assert result.house_fill == Fill(maker_id=None, maker_owner_id=None, price=D("100.51"), quantity=D("1.5"))
    assert result.outcome is Outcome.FILLED


def test_house_fills_sell_remainder_at_price_rounded_down_to_tick() -> None:
    # 100.003 * 0.995 = 99.502985 -> 99.50 (down, against the taker).
    result = match(
        taker=market(Side.SELL, "2"), makers=[], rules=rules(reference="100.003", house=house(percent="0.5"))
    )
    assert fills_of(result) == [(None, D("99.50"), D("2"))]
    assert result.outcome is Outcome.FILLED


def test_house_capacity_limited_by_max_notional() -> None:
    # price 100.5; 250 / 100.5 = 2.4875... -> 2.487 at step 0.001
    result = match(taker=market(Side.BUY, "5"), makers=[], rules=rules(house=house(max_notional="250")))
    assert fills_of(result) == [(None, D("100.50"), D("2.487"))]
    assert result.house_fill is not None
    assert result.house_fill.price * result.house_fill.quantity <= D("250")
    assert result.outcome is Outcome.EXPIRED
    assert result.reason is ExpiryReason.NO_LIQUIDITY
    assert result.remaining_quantity == D("2.513")


def test_house_capacity_by_notional_exactly_at_budget() -> None:
    result = match(taker=market(Side.BUY, "5"), makers=[], rules=rules(step="0.1", house=house(max_notional="201")))
    assert fills_of(result) == [(None, D("100.50"), D("2"))]


def test_house_capacity_limited_by_base_inventory_for_buy_taker() -> None:
    result = match(taker=market(Side.BUY, "5"), makers=[], rules=rules(step="0.01", house=house(base="1.23456")))
    assert fills_of(result) == [(None, D("100.50"), D("1.23"))]


def test_house_capacity_limited_by_quote_inventory_for_sell_taker() -> None:
    # price 99.5; 150 / 99.5 = 1.5075... -> 1.5 at step 0.1
    result = match(taker=market(Side.SELL, "5"), makers=[], rules=rules(step="0.1", house=house(quote="150")))
    assert fills_of(result) == [(None, D("99.50"), D("1.5"))]


def test_house_capacity_limited_by_taker_remainder() -> None:
    result = match(taker=market(Side.BUY, "0.7"), makers=[], rules=rules(house=house()))
    assert fills_of(result) == [(None, D("100.50"), D("0.7"))]
    assert result.outcome is Outcome.FILLED


def test_house_price_beyond_guard_means_no_house_fill() -> None:
    result = match(taker=market(Side.BUY, "1"), makers=[], rules=rules(bps=100, house=house(percent="2")))
    assert result.fills == ()
    assert result.reason is ExpiryReason.NO_LIQUIDITY


def test_house_price_rounded_onto_the_guard_still_fills() -> None:
    # guard = 100 * 1.01 = 101; house 100 * 1.0095 = 100.95 -> tick 0.5 rounds up to 101.
    result = match(taker=market(Side.BUY, "1"), makers=[], rules=rules(tick="0.5", house=house(percent="0.95")))
    assert fills_of(result) == [(None, D("101.0"), D("1"))]


def test_house_price_rounded_beyond_the_guard_does_not_fill() -> None:
    # guard 101; house 100 * 1.0095 = 100.95 -> tick 2 rounds up to 102 > 101.
    result = match(taker=market(Side.BUY, "1"), makers=[], rules=rules(tick="2", house=house(percent="0.95")))
    assert result.fills == ()


@pytest.mark.parametrize(
    "inventory",
    [
        {"base": "0.9"},  # less than one step of base
        {"max_notional": "100"},  # one step at 100.5 costs more than that
    ],
)
def test_zero_house_capacity_means_no_house_fill(inventory: dict[str, str]) -> None:
    result = match(taker=market(Side.BUY, "2"), makers=[], rules=rules(step="1", house=house(**inventory)))
    assert result.fills == ()
    assert result.house_fill is None
    assert result.reason is ExpiryReason.NO_LIQUIDITY


def test_house_fills_after_book_and_reports_slippage_for_the_rest() -> None:
    asks = [maker(1, "100", "1"), maker(2, "103", "10")]
    result = match(taker=market(Side.BUY, "5"), makers=asks, rules=rules(house=house(base="2")))
    assert fills_of(result) == [(1, D("100"), D("1")), (None, D("100.50"), D("2"))]
    assert len([fill for fill in result.fills if fill.maker_id is None]) == 1
    assert result.reason is ExpiryReason.SLIPPAGE_GUARD
    assert result.remaining_quantity == D("2")


def test_house_never_serves_limit_takers() -> None:
    result = match(taker=taker(Side.BUY, "1", limit="200", tif=TimeInForce.IOC), makers=[], rules=rules(house=house()))
    assert result.fills == ()
    assert result.reason is ExpiryReason.IOC_REMAINDER


def test_house_makes_market_fok_fillable_and_respects_capacity() -> None:
    asks = [maker(1, "100", "1")]
    ok = match(taker=market(Side.BUY, "3", tif=TimeInForce.FOK), makers=asks, rules=rules(house=house(base="2")))
    refused = match(
        taker=market(Side.BUY, "3.001", tif=TimeInForce.FOK), makers=asks, rules=rules(house=house(base="2"))
    )
    assert fills_of(ok) == [(1, D("100"), D("1")), (None, D("100.50"), D("2"))]
    assert ok.outcome is Outcome.FILLED
    assert refused.fills == ()
    assert refused.reason is ExpiryReason.FOK_NOT_FILLABLE


@pytest.mark.parametrize(
    ("side", "best", "filled"),
    [
        # The house sells at 100.50 (reference 100): bids at or above it would buy straight
        # back what it sold; a bid below leaves the fill as it was.
        (Side.BUY, "100.50", False),
        (Side.BUY, "120", False),
        (Side.BUY, "100.49", True),
        # It buys at 99.50: asks at or below it would sell it back what it bought.
        (Side.SELL, "99.50", False),
        (Side.SELL, "80", False),
        (Side.SELL, "99.51", True),
    ],
)
def test_house_never_fills_at_a_price_the_takers_own_side_of_the_book_reaches(
    side: Side, best: str, filled: bool
) -> None:
    # A stale reference (100) while the book has moved (bids at 120): the house's 100.50
    # offer would be bought and sold on to the bids, again and again.
    result = match(taker=market(side, "1"), makers=[], rules=rules(house=house(taker_side_best=best)))
    assert (result.house_fill is not None) is filled
    if not filled:
        assert result.fills == ()
        assert result.reason is ExpiryReason.NO_LIQUIDITY


def test_house_fill_is_none_without_house() -> None:
    result = match(taker=market(Side.BUY, "1"), makers=[maker(1, "100", "1")], rules=rules())
    assert result.house_fill is None


# --- lazy consumption --------------------------------------------------------------------


def test_stops_pulling_once_the_taker_is_filled() -> None:
    asks = [maker(1, "100", "2"), maker(2, "100", "2")]
    result = match(taker=market(Side.BUY, "2"), makers=book_that_raises_after(asks, 1), rules=rules())
    assert result.outcome is Outcome.FILLED
    assert result.makers_examined == 1


def test_limit_stops_at_the_first_maker_beyond_the_limit() -> None:
    asks = [maker(1, "100", "1"), maker(2, "102", "1"), maker(3, "103", "1")]
    result = match(taker=taker(Side.BUY, "5", limit="101"), makers=book_that_raises_after(asks, 2), rules=rules())
    assert result.outcome is Outcome.REST
    assert result.makers_examined == 2


def test_market_peeks_only_one_maker_beyond_the_guard() -> None:
    asks = [maker(1, "100", "1"), maker(2, "102", "1"), maker(3, "103", "1")]
    result = match(taker=market(Side.BUY, "5"), makers=book_that_raises_after(asks, 2), rules=rules())
    assert result.reason is ExpiryReason.SLIPPAGE_GUARD
    assert result.makers_examined == 2


def test_stp_expire_taker_stops_pulling() -> None:
    result = match(
        taker=taker(Side.BUY, "5", limit="101", stp=SelfTradePrevention.EXPIRE_TAKER),
        makers=book_that_raises_after(own_then_other(), 2),
        rules=rules(),
    )
    assert result.reason is ExpiryReason.SELF_TRADE_PREVENTION
    assert result.makers_examined == 2


def test_accepts_a_generator_of_pages() -> None:
    pages = [[maker(1, "100", "1"), maker(2, "100", "1")], [maker(3, "100.5", "1")], [maker(4, "101", "9")]]
    pulled_pages: list[int] = []

    def paged() -> Iterator[RestingOrder]:
        for number, page in enumerate(pages):
            pulled_pages.append(number)
            yield from page

    result = match(taker=taker(Side.BUY, "2.5", limit="101"), makers=paged(), rules=rules())
    assert result.filled_quantity == D("2.5")
    assert pulled_pages == [0, 1]


# --- validation and value objects --------------------------------------------------------


@pytest.mark.parametrize("quantity", ["0", "-1"])
def test_non_positive_quantity_is_refused(quantity: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        match(taker=taker(Side.BUY, quantity, limit="100"), makers=[], rules=rules())


def test_off_step_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="step"):
        match(taker=taker(Side.BUY, "1.0001", limit="100"), makers=[], rules=rules())


def test_gtc_market_is_refused() -> None:
    with pytest.raises(ValueError, match="GTC"):
        match(taker=taker(Side.BUY, "1", tif=TimeInForce.GTC), makers=[], rules=rules())


def test_non_positive_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit_price"):
        match(taker=taker(Side.BUY, "1", limit="0"), makers=[], rules=rules())


def test_float_quantity_is_refused() -> None:
    order = TakerOrder(
        owner_id=1,
        side=Side.BUY,
        quantity=1.0,  # type: ignore[arg-type]
        limit_price=D("100"),
        time_in_force=TimeInForce.GTC,
        stp=SelfTradePrevention.SKIP,
    )
    with pytest.raises(TypeError):
        match(taker=order, makers=[], rules=rules())


def test_maker_with_nothing_remaining_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing remaining"):
        match(taker=taker(Side.BUY, "1", limit="100"), makers=[maker(1, "100", "0")], rules=rules())


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="price_tick"):
        match(taker=taker(Side.BUY, "1", limit="100"), makers=[], rules=rules(tick="0"))
    with pytest.raises(ValueError, match="max_slippage_bps"):
        match(taker=market(Side.BUY, "1"), makers=[], rules=rules(bps=-1))


def test_rules_once_valid_stay_valid_and_other_rules_are_checked_again() -> None:
    # match checks a rules object once (the engine passes the same one while its market is
    # unchanged): a new object, even right after a valid one, is checked.
    valid = rules()
    for _ in range(2):
        assert match(taker=taker(Side.BUY, "1", limit="100"), makers=[], rules=valid).outcome is Outcome.REST
    with pytest.raises(ValueError, match="reference_price"):
        match(taker=taker(Side.BUY, "1", limit="100"), makers=[], rules=rules(reference="0"))
    with pytest.raises(ValueError, match="quantity_step"):
        match(taker=taker(Side.BUY, "1", limit="100"), makers=[], rules=rules(step="-1"))
    assert match(taker=taker(Side.BUY, "1", limit="100"), makers=[], rules=valid).outcome is Outcome.REST


def test_plain_string_enums_are_coerced_in_plain_python_refused_compiled_and_unknown_ones_refused() -> None:
    """The vocabulary's text where its members are declared (Django choice values): plain
    Python coerces it (`_normalized`); compiled, the declared types are checked at
    construction (core/compiled.py) and it is refused. Unknown values are refused either way."""

    def plain_strings() -> TakerOrder:
        return TakerOrder(
            owner_id=1,
            side="buy",  # type: ignore[arg-type]
            quantity=D("1"),
            limit_price=D("100"),
            time_in_force="IOC",  # type: ignore[arg-type]
            stp="skip",  # type: ignore[arg-type]
        )

    compiled = compiled_in_use()
    if compiled:
        with pytest.raises(TypeError):
            plain_strings()
    else:
        result = match(taker=plain_strings(), makers=[maker(1, "100", "1")], rules=rules())
        assert result.outcome is Outcome.FILLED
    with pytest.raises(TypeError if compiled else ValueError):
        match(taker=taker(Side.BUY, "1", limit="100", tif="DAY"), makers=[], rules=rules())  # type: ignore[arg-type]


def test_fill_notional_is_rounded_down_to_8_places() -> None:
    fill = Fill(maker_id=1, maker_owner_id=2, price=D("0.33333333"), quantity=D("0.3"))
    assert fill.notional == D("0.09999999")  # exact 0.099999999
    assert Fill(maker_id=1, maker_owner_id=2, price=D("2.5"), quantity=D("4")).notional == D("10")
