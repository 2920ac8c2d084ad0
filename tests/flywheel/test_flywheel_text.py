"""flywheel/templatetags/flywheel_text.py: the flywheel's presentation."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from flywheel.templatetags.flywheel_text import meter_value


@given(st.decimals(min_value=-1000, max_value=100_000, places=2, allow_nan=False, allow_infinity=False))
def test_a_meters_value_stays_within_its_range_and_is_the_percent_inside_it(percent):
    value = meter_value(percent)
    assert Decimal(0) <= value <= Decimal(100)
    if Decimal(0) <= percent <= Decimal(100):
        assert value == percent
