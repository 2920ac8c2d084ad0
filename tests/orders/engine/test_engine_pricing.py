"""orders.engine.pricing.reference_price_move_allowed: how far staff may move a market's
reference price in one step, checked against exact fractions."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from orders.engine.pricing import reference_price_move_allowed

D = Decimal
prices = st.decimals(min_value=D("0.00000001"), max_value=D("1e12"), places=8)
anchors = st.one_of(st.none(), st.just(D(0)), prices)
percents = st.decimals(min_value=D(0), max_value=D(1000), places=2)


@given(price=prices, reference=anchors, last=anchors, percent=percents)
def test_allowed_exactly_within_the_ratio_of_an_anchor(price, reference, last, percent):
    ratio = 1 + Fraction(percent) / 100
    present = [Fraction(a) for a in (reference, last) if a is not None and a > 0]
    expected = not present or any(a / ratio <= Fraction(price) <= a * ratio for a in present)
    assert reference_price_move_allowed(price=price, anchors=(reference, last), max_move_percent=percent) == expected


def test_a_mistyped_price_is_refused_and_a_move_within_the_band_of_either_anchor_is_not():
    def allowed(price: str, *, last: str | None = None) -> bool:
        anchors = (D("60000.00"), None if last is None else D(last))
        return reference_price_move_allowed(price=D(price), anchors=anchors, max_move_percent=D(50))

    assert not allowed("60.00")  # 60000.00 with three digits lost
    assert not allowed("600000.00")
    assert allowed("40000.00") and allowed("90000.00")
    assert not allowed("39999.99") and not allowed("90000.01")
    assert allowed("30000.00", last="25000.00")  # the book has moved on: near the last price
