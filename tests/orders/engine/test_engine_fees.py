"""Fees, TTX discount tiers and buy lock amounts."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orders.engine import (
    TIERS,
    Fill,
    buy_lock_amount,
    calculate_fee,
    fee_discount_for,
    fee_tier_for,
    market_buy_lock_amount,
)

D = Decimal


# --- tiers -------------------------------------------------------------------------------


def test_tiers_table() -> None:
    assert [(tier.name, tier.threshold, tier.discount) for tier in TIERS] == [
        ("bronze", D(100), D("0.10")),
        ("silver", D(1_000), D("0.20")),
        ("gold", D(10_000), D("0.35")),
        ("platinum", D(100_000), D("0.50")),
        ("diamond", D(1_000_000), D("0.70")),
    ]


@pytest.mark.parametrize(
    ("holdings", "discount", "tier"),
    [
        ("0", "0", None),
        ("99.99999999", "0", None),
        ("100", "0.10", "bronze"),
        ("999.99999999", "0.10", "bronze"),
        ("1000", "0.20", "silver"),
        ("9999.99999999", "0.20", "silver"),
        ("10000", "0.35", "gold"),
        ("99999.99999999", "0.35", "gold"),
        ("100000", "0.50", "platinum"),
        ("999999.99999999", "0.50", "platinum"),
        ("1000000", "0.70", "diamond"),
        ("250000000", "0.70", "diamond"),
    ],
)
def test_discount_tier_boundaries(holdings: str, discount: str, tier: str | None) -> None:
    assert fee_discount_for(D(holdings)) == D(discount)
    found = fee_tier_for(D(holdings))
    assert (None if found is None else found.name) == tier


def test_float_holdings_are_refused() -> None:
    with pytest.raises(TypeError):
        fee_discount_for(100.0)  # type: ignore[arg-type]


# --- fee arithmetic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notional", "bps", "discount", "fee"),
    [
        ("1000", 10, "0", "1"),
        ("1000", 10, "0.35", "0.65"),
        ("1000", 10, "0.70", "0.3"),
        ("0.12345678", 10, "0", "0.00012345"),  # exact 0.00012345678: rounded down, not to nearest
        ("0.00999999", 10, "0", "0.00000999"),  # exact 0.00000999999
        ("0.00000999", 10, "0", "0"),  # below one satoshi
        ("333.33333333", 7, "0.10", "0.20999999"),  # exact 0.2099999999979
        ("1000", D("7.5"), "0", "0.75"),
        ("1000", 0, "0", "0"),
    ],
)
def test_fee_is_rounded_down_to_8_places(notional: str, bps: int | Decimal, discount: str, fee: str) -> None:
    assert calculate_fee(notional=D(notional), fee_bps=bps, discount=D(discount)) == D(fee)


def test_fee_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        calculate_fee(notional=D("-1"), fee_bps=10)
    with pytest.raises(ValueError):
        calculate_fee(notional=D("1"), fee_bps=-1)
    with pytest.raises(ValueError):
        calculate_fee(notional=D("1"), fee_bps=10, discount=D("1.5"))
    with pytest.raises(TypeError):
        calculate_fee(notional=D("1"), fee_bps=10.0)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 10**12), min_size=1, max_size=10),
    st.integers(0, 100),
    st.sampled_from([tier.discount for tier in TIERS] + [D(0)]),
)
def test_fees_are_sub_additive_and_within_a_satoshi(sats: list[int], bps: int, discount: Decimal) -> None:
    notionals = [D(amount).scaleb(-8) for amount in sats]
    fees = [calculate_fee(notional=notional, fee_bps=bps, discount=discount) for notional in notionals]
    assert sum(fees) <= calculate_fee(notional=sum(notionals, D(0)), fee_bps=bps, discount=discount)
    for notional, fee in zip(notionals, fees, strict=True):
        exact = Fraction(notional) * bps / 10_000 * (1 - Fraction(discount))
        assert exact - Fraction(1, 10**8) < Fraction(fee) <= exact


# --- lock amounts ------------------------------------------------------------------------


def test_buy_lock_amount_is_notional_plus_full_taker_fee() -> None:
    assert buy_lock_amount(quantity=D("1.5"), price=D("100.01"), taker_fee_bps=10) == D("150.165015")


def test_buy_lock_amount_rounds_the_notional_up() -> None:
    # 0.33333333 * 0.33333333 = 0.1111111088888889 -> 0.11111111; fee 0.000111111 -> 0.00011111
    assert buy_lock_amount(quantity=D("0.33333333"), price=D("0.33333333"), taker_fee_bps=10) == D("0.11122222")


def test_market_buy_lock_amount_prices_at_the_guard() -> None:
    # 100 * 1.01 = 101 -> 202 + 0.202
    assert market_buy_lock_amount(quantity=D(2), reference_price=D(100), max_slippage_bps=100, taker_fee_bps=10) == D(
        "202.202"
    )


def test_market_buy_lock_amount_rounds_the_guard_price_up() -> None:
    # 0.33333333 * 1.0001 = 0.333366663333 -> 0.33336667; * 3 = 1.00010001; fee 0 bps
    assert market_buy_lock_amount(
        quantity=D(3), reference_price=D("0.33333333"), max_slippage_bps=1, taker_fee_bps=0
    ) == D("1.00010001")


def test_lock_inputs_are_validated() -> None:
    with pytest.raises(ValueError):
        buy_lock_amount(quantity=D(0), price=D(1), taker_fee_bps=10)
    with pytest.raises(TypeError):
        buy_lock_amount(quantity=D(1), price=1.5, taker_fee_bps=10)  # type: ignore[arg-type]


@st.composite
def split_buys(draw: st.DrawFn) -> tuple[Decimal, Decimal, list[tuple[Decimal, Decimal]]]:
    """A quantity, a limit price and the fills it is split into at prices at or below the limit."""
    step = draw(st.sampled_from([D("0.00000001"), D("0.001"), D("0.1"), D(1)]))
    # Prices with a full 8 decimal places make notional rounding bite.
    limit = D(draw(st.integers(1, 10**12))).scaleb(-8)
    steps = draw(st.integers(1, 10**6))
    cuts = sorted(draw(st.lists(st.integers(0, steps), max_size=8)))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, steps], strict=True) if b > a]
    # Partially filled orders must be covered too, so drop some trailing parts.
    parts = parts[: draw(st.integers(1, len(parts)))]
    fills = [(part * step, D(draw(st.integers(1, int(limit.scaleb(8))))).scaleb(-8)) for part in parts]
    return steps * step, limit, fills


@settings(max_examples=300, deadline=None)
@given(split_buys(), st.integers(0, 50), st.integers(0, 50), st.sampled_from([t.discount for t in TIERS] + [D(0)]))
def test_buy_lock_covers_any_split_into_fills(
    case: tuple[Decimal, Decimal, list[tuple[Decimal, Decimal]]],
    taker_fee_bps: int,
    fee_reduction_bps: int,
    discount: Decimal,
) -> None:
    quantity, limit, fills = case
    lock = buy_lock_amount(quantity=quantity, price=limit, taker_fee_bps=taker_fee_bps)
    # Fills may be charged a lower (maker or discounted) fee, never a higher one.
    charged_bps = max(0, taker_fee_bps - fee_reduction_bps)
    spent = D(0)
    for fill_quantity, price in fills:
        notional = Fill(maker_id=1, maker_owner_id=2, price=price, quantity=fill_quantity).notional
        spent += notional + calculate_fee(notional=notional, fee_bps=charged_bps, discount=discount)
    assert spent <= lock
    # ... and the lock is tight: at most two satoshis over the exact cost of the whole order.
    exact = Fraction(quantity) * Fraction(limit) * (1 + Fraction(taker_fee_bps, 10_000))
    assert Fraction(lock) < exact + Fraction(2, 10**8)
