from __future__ import annotations

from decimal import Decimal

import pytest

from core.money import EXPONENT_REFUSAL, MAX_AMOUNT, amount_refusal, parse_amount


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("9" * 23, "Too large: at most 22 digits before the decimal point."),
        ("9" * 23 + ".5", "Too large: at most 22 digits before the decimal point."),
        (Decimal("1E+30"), "Too large: at most 22 digits before the decimal point."),
        ("1.000000001", "At most 8 decimal places."),
        ("1e3", EXPONENT_REFUSAL),
        ("1.5E-7", EXPONENT_REFUSAL),
        ("1e", 'Must be a positive decimal number, such as "1.5".'),
        ("e5", 'Must be a positive decimal number, such as "1.5".'),
        (None, 'Must be a positive decimal number, such as "1.5".'),
    ],
)
def test_a_refused_amount_is_told_what_is_wrong(value, reason):
    """Above the column's maximum was refused as "at most 8 decimal places"."""
    assert parse_amount(value) is None
    assert amount_refusal(value) == reason


def test_the_largest_amount_is_not_refused():
    assert parse_amount(str(MAX_AMOUNT)) == MAX_AMOUNT
