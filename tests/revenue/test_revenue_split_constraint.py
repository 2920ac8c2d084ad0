"""The split constraint holds on values whose float sum is inexact (12875.55 = 1931.3325 +
10944.2175 is 12875.550000000001 in binary floating point) and still refuses a real mismatch,
up to the column's size (30 digits, 8 decimals), where SQLite's floats cannot tell one
satoshi, or even a few units, apart."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from revenue.models import RevenueEvent
from revenue.services import revenue_collect

pytestmark = pytest.mark.django_db


def test_amounts_with_inexact_float_sums_are_accepted():
    event = revenue_collect(stream=0, amount="12875.55", description="x", source_type="t", source_id="1")
    assert event.holder_share + event.reserve_share == Decimal("12875.55")


def test_a_split_off_by_one_satoshi_is_refused():
    event = revenue_collect(stream=0, amount="10", description="x", source_type="t", source_id="2")
    with pytest.raises(IntegrityError), transaction.atomic():
        RevenueEvent.objects.filter(pk=event.pk).update(reserve_share=event.reserve_share + Decimal("0.00000001"))


@pytest.mark.parametrize(
    "amount",
    [
        "10.01",  # the decimals carry
        "100000000000",  # the low half of the integer digits carries
        "30483157506392153.05670627",  # a trade's fees that SQLite's float check refused
        "24691357802715913.57802468",
        "9999999999999999999999.99999999",  # the column's largest
    ],
)
def test_exact_splits_up_to_the_column_size_are_accepted_and_one_satoshi_off_refused(amount):
    event = revenue_collect(stream=0, amount=amount, description="x", source_type="t", source_id=amount)
    assert event.holder_share + event.reserve_share == Decimal(amount)
    for off in (Decimal("0.00000001"), Decimal("-0.00000001"), Decimal(1)):
        with pytest.raises(IntegrityError), transaction.atomic():
            RevenueEvent.objects.filter(pk=event.pk).update(holder_share=event.holder_share + off)
