"""Rounding helpers and price limits."""

from __future__ import annotations

from decimal import Decimal, getcontext, localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orders.engine import (
    AMOUNT_PLACES,
    Side,
    affordable_quantity,
    ceil_to_tick,
    floor_to_step,
    floor_to_tick,
    house_price,
    notional_of,
    quantize_down,
    quantize_up,
    slippage_limit,
)
from orders.engine.money import average_price, exact_arithmetic, fills_quote_exact

D = Decimal


def test_amount_places() -> None:
    assert AMOUNT_PLACES == 8


@pytest.mark.parametrize(
    ("value", "down", "up"),
    [
        ("1.123456789", "1.12345678", "1.12345679"),
        ("1.12345678", "1.12345678", "1.12345678"),
        ("-1.123456789", "-1.12345679", "-1.12345678"),
        ("0.000000001", "0", "0.00000001"),
    ],
)
def test_quantize(value: str, down: str, up: str) -> None:
    assert quantize_down(D(value)) == D(down)
    assert quantize_up(D(value)) == D(up)


@pytest.mark.parametrize(
    ("value", "unit", "floor", "ceil"),
    [
        ("10.37", "0.1", "10.3", "10.4"),
        ("10.3", "0.1", "10.3", "10.3"),
        ("10.37", "0.25", "10.25", "10.5"),
        ("0.05", "1", "0", "1"),
        ("-0.05", "1", "-1", "0"),
    ],
)
def test_floor_and_ceil_to_grid(value: str, unit: str, floor: str, ceil: str) -> None:
    assert floor_to_step(D(value), step=D(unit)) == D(floor)
    assert floor_to_tick(D(value), tick=D(unit)) == D(floor)
    assert ceil_to_tick(D(value), tick=D(unit)) == D(ceil)


def test_grid_unit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        floor_to_step(D(1), step=D(0))


def test_affordable_quantity_never_overspends_where_division_would_round_up() -> None:
    # budget / price = 0.99999999999999999999999999999999... which a 28-digit division rounds to 1.
    price = D("3")
    budget = D("2.99999999999999999999999999999999")
    with localcontext() as context:
        context.prec = 28
        assert floor_to_step(budget / price, step=D("0.00000001")) == D(1)  # the naive way overspends
    quantity = affordable_quantity(budget=budget, price=price, step=D("0.00000001"))
    assert quantity == D("0.99999999")
    assert quantity * price <= budget


def test_notional_is_exact_before_rounding_down_even_for_30_digit_amounts() -> None:
    price = D("9999999999999999999999.99999999")
    assert notional_of(price=price, quantity=D("0.00000001")) == D("99999999999999.99999999")
    assert notional_of(price=price, quantity=D("3")) == D("29999999999999999999999.99999997")


def test_slippage_limits() -> None:
    assert slippage_limit(side=Side.BUY, reference_price=D(200), max_slippage_bps=150) == D(203)
    assert slippage_limit(side=Side.SELL, reference_price=D(200), max_slippage_bps=150) == D(197)


def test_house_price_rounds_against_the_taker() -> None:
    kwargs = {"reference_price": D("100.003"), "slippage_percent": D("0.5"), "price_tick": D("0.01")}
    assert house_price(side=Side.BUY, **kwargs) == D("100.51")
    assert house_price(side=Side.SELL, **kwargs) == D("99.50")


@pytest.mark.parametrize("prec", [28, 80])
def test_exact_whatever_the_thread_context(prec: int) -> None:
    # The helpers name the money context themselves and exact_arithmetic() switches only
    # when the thread's context is not an exact one already: both must give exact results
    # under Python's default 28 digits too (a thread that never installed the money context).
    price, quantity = D("9999999999999999999999.99999999"), D("3")
    with localcontext() as context:
        context.prec = prec
        assert notional_of(price=price, quantity=quantity) == D("29999999999999999999999.99999997")
        assert ceil_to_tick(D("-9999999999999999999999.99999998"), tick=D("0.00000003")) == D(
            "-9999999999999999999999.99999996"
        )
        with exact_arithmetic():
            assert price * quantity == D("29999999999999999999999.99999997")
            assert getcontext().prec == 80
        assert getcontext().prec == prec


@given(
    tick=st.integers(min_value=1, max_value=999).flatmap(
        lambda digits: st.integers(min_value=0, max_value=10).map(lambda places: Decimal(digits).scaleb(-places))
    ),
    step=st.integers(min_value=1, max_value=999).flatmap(
        lambda digits: st.integers(min_value=0, max_value=10).map(lambda places: Decimal(digits).scaleb(-places))
    ),
    ticks=st.integers(min_value=1, max_value=10**6),
    steps=st.integers(min_value=1, max_value=10**6),
)
def test_fills_quote_exact_says_whether_every_fill_moves_its_exact_notional(tick, step, ticks, steps):
    """Exact steps: any price and quantity on them move price x quantity to the last unit.
    Not exact: the smallest fill (one step at one tick) is cut."""
    price, quantity = tick * ticks, step * steps
    if fills_quote_exact(price_tick=tick, quantity_step=step):
        assert notional_of(price=price, quantity=quantity) == price * quantity
    else:
        assert notional_of(price=tick, quantity=step) != tick * step


satoshis = st.integers(min_value=1, max_value=10**30 - 1)  # the columns: 30 digits, 8 decimals


@given(quote=satoshis, quantity=satoshis)
def test_average_price_is_the_exact_ratio_rounded_half_even_to_8_places(quote: int, quantity: int) -> None:
    """Against Fractions: the engine's answers and the stored order's body say the same."""
    exact = Fraction(quote, quantity)  # (quote / 1e8) / (quantity / 1e8)
    scaled = exact * 10**AMOUNT_PLACES
    expected = round(scaled)  # Python's round of a Fraction: half to even
    got = average_price(quote=D(quote).scaleb(-8), quantity=D(quantity).scaleb(-8))
    assert got == D(expected).scaleb(-AMOUNT_PLACES)


def test_no_average_price_before_a_fill() -> None:
    assert average_price(quote=D(0), quantity=D(0)) is None
