from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import OperationalError
from django.db.models import Sum
from hypothesis import given
from hypothesis import strategies as st

from revenue.delivery.metadata import DeliveryMetadata, DeliveryStatus
from revenue.errors import InvalidRevenueAmount, StreamNotFound
from revenue.models import RevenueEvent, RevenueStream
from revenue.services import revenue_collect
from revenue.split import revenue_split

pytestmark = pytest.mark.django_db

STREAM_NAMES = [
    "Trading Fees",
    "Withdrawal Fees",
    "Premium Subscriptions",
    "API Licensing",
    "Market Making",
    "Lending Interest",
    "Staking Commissions",
    "Copy Trading Fees",
    "White Label Licensing",
    "Token Appreciation",
]


def test_the_ten_streams_are_seeded_by_migration():
    assert list(RevenueStream.objects.order_by("id").values_list("id", "name")) == list(enumerate(STREAM_NAMES))
    assert all(s.target_monthly > 0 for s in RevenueStream.objects.all())


def test_collect_records_event_split_and_stream_total():
    event = revenue_collect(
        stream=1, amount="10.00000001", description="withdrawal fee", source_type="withdrawal", source_id="w-1"
    )
    assert event.gross_amount == Decimal("10.00000001")
    assert event.holder_share == Decimal("1.50000000")  # 15% of 10.00000001 = 1.5000000015, rounded down
    assert event.reserve_share == Decimal("8.50000001")
    assert event.holder_share + event.reserve_share == event.gross_amount
    document = DeliveryMetadata.of(event.metadata)
    assert document.status == DeliveryStatus.PENDING and document.retry_attempts == 0
    assert document.stream_name == "Withdrawal Fees" and document.timestamp
    assert RevenueStream.objects.get(pk=1).collected == Decimal("10.00000001")


def test_collecting_the_same_source_twice_records_once():
    first = revenue_collect(stream=2, amount="5", description="sub", source_type="subscription", source_id="s-9")
    again = revenue_collect(stream=2, amount="5", description="sub", source_type="subscription", source_id="s-9")
    assert again.pk == first.pk
    assert RevenueEvent.objects.count() == 1
    assert RevenueStream.objects.get(pk=2).collected == Decimal("5")


@pytest.mark.parametrize("amount", ["0", "-1", "abc", None, 1.5, "1.000000001", Decimal("NaN")])
def test_collect_rejects_non_positive_or_non_decimal_amounts(amount):
    with pytest.raises(InvalidRevenueAmount):
        revenue_collect(stream=0, amount=amount, description="x", source_type="t", source_id="1")
    assert not RevenueEvent.objects.exists()


def test_collect_rejects_unknown_stream():
    with pytest.raises(StreamNotFound):
        revenue_collect(stream=42, amount="1", description="x", source_type="t", source_id="1")


def test_collect_retries_transient_database_errors(monkeypatch):
    import revenue.services as services

    real = services.revenue_event_record
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] < 3:
            raise OperationalError("could not serialize access")
        return real(**kwargs)

    monkeypatch.setattr(services, "revenue_event_record", flaky)
    monkeypatch.setattr(services.time, "sleep", lambda s: None)
    event = revenue_collect(stream=3, amount="2", description="api", source_type="api", source_id="a-1")
    assert calls["n"] == 3
    assert event.pk is not None


@given(gross=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e12"), places=8))
def test_split_is_exact_and_holder_rounds_down(gross):
    split = revenue_split(gross=gross)
    assert split.holder + split.reserve == gross
    assert split.holder <= gross * Decimal("0.15") < split.holder + Decimal("0.00000001")
    assert split.holder >= 0 and split.reserve >= 0


def test_stream_total_equals_sum_of_events():
    for i in range(7):
        revenue_collect(stream=5, amount=f"{i + 1}.5", description="x", source_type="loan", source_id=str(i))
    total = RevenueEvent.objects.filter(stream_id=5).aggregate(total=Sum("gross_amount"))["total"]
    assert RevenueStream.objects.get(pk=5).collected == total == Decimal("31.5")


def test_a_streams_total_past_one_amounts_digits_is_recorded():
    """A stream's `collected` adds every currency's events as they are (a market quoted in
    USDT and one quoted in ETH both pay Trading Fees), so it passes an amount's 22 integer
    digits where no event and no wallet does. In NUMERIC(30, 8) the second event failed on
    PostgreSQL ("numeric field overflow"): never recorded, and a trade's fees retried by
    the sweep forever."""
    large = "6000000000000000000000.12345678"
    revenue_collect(stream=0, amount=large, description="fees", source_type="t", source_id="1", currency="USDT")
    revenue_collect(stream=0, amount=large, description="fees", source_type="t", source_id="2", currency="ETH")
    assert RevenueEvent.objects.filter(stream_id=0).count() == 2
    assert RevenueStream.objects.get(pk=0).collected == Decimal(large) * 2
