"""core.api.fields' output fields write exactly what DRF's own fields write (the schema and
the contract were written against those), for every amount a column holds and every
moment, in more than one time zone; output_shaper gives what DRF's `.data` gives."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from rest_framework import serializers

from core.api.fields import MomentOutput, MoneyOutput, output_shaper
from core.money import MAX_AMOUNT, QUANTUM

DRF_MONEY = serializers.DecimalField(max_digits=30, decimal_places=8, coerce_to_string=True)
DRF_MOMENT = serializers.DateTimeField()

column_amounts = st.decimals(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT, places=8, allow_nan=False)
time_zones = st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"])


@given(amount=column_amounts)
def test_an_amount_is_written_as_drf_writes_it(amount: Decimal) -> None:
    assert MoneyOutput().to_representation(amount) == DRF_MONEY.to_representation(amount)


@given(amount=st.integers(min_value=-(10**22) + 1, max_value=10**22 - 1))
def test_an_integer_amount_too(amount: int) -> None:
    # An order built in memory holds the int 0 until it trades.
    drf_written = DRF_MONEY.to_representation(amount)  # type: ignore[arg-type]  # DRF reads any number
    assert MoneyOutput().to_representation(amount) == drf_written


def test_amounts_at_the_edges() -> None:
    for amount in (Decimal(0), Decimal("-0"), QUANTUM, MAX_AMOUNT, Decimal("1E+5"), Decimal("0E-12")):
        assert MoneyOutput().to_representation(amount) == DRF_MONEY.to_representation(amount)
    assert MoneyOutput().to_representation(Decimal("1E+5")) == "100000.00000000"


# hypothesis takes naive bounds and adds the time zones itself.
@given(
    moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
    zone=time_zones,
)
def test_a_moment_is_written_as_drf_writes_it(moment: datetime, zone: str) -> None:
    with timezone.override(zone):
        assert MomentOutput().to_representation(moment) == DRF_MOMENT.to_representation(moment)


class Level(serializers.Serializer):
    price = MoneyOutput()
    at = MomentOutput(allow_null=True)


class Book(serializers.Serializer):
    symbol = serializers.CharField(source="name")
    levels = Level(many=True)
    best = Level(allow_null=True)
    count = serializers.SerializerMethodField()

    def get_count(self, book: dict) -> int:
        return len(book["levels"])


def test_a_shaper_gives_what_drf_data_gives() -> None:
    shape = output_shaper(Book)
    at = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    books = [
        {"name": "ETH-USDT", "levels": [{"price": Decimal("1.5"), "at": at}, {"price": 0, "at": None}], "best": None},
        {"name": "BTC-USDT", "levels": [], "best": {"price": Decimal("2"), "at": at}},
    ]
    for book in books:
        assert shape(book) == Book(book).data
        assert list(shape(book)) == list(Book(book).data)
    assert shape(books[0])["levels"][0] == {"price": "1.50000000", "at": "2026-01-02T03:04:05.600000Z"}


class Upper(serializers.Serializer):
    name = serializers.CharField()

    def to_representation(self, instance: object) -> dict:
        return {"name": str(super().to_representation(instance)["name"]).upper()}


class Gone(serializers.Serializer):
    """Every way DRF's look-up can end other than a plain value."""

    absent_null = serializers.CharField(source="nothing_here", allow_null=True)
    absent_default = serializers.CharField(source="nothing_either", default="fallback")
    absent_skipped = serializers.CharField(source="nor_here", required=False)
    called = serializers.CharField(source="label")
    deleted = serializers.CharField(source="row.name", allow_null=True)
    nested_own_way = Upper(source="child")
    nested_many_own_way = Upper(source="children", many=True)


class Thing:
    def __init__(self) -> None:
        self.child = {"name": "one"}
        self.children = [{"name": "two"}, {"name": "three"}]

    def label(self) -> str:
        return "called"

    @property
    def row(self) -> object:
        raise ObjectDoesNotExist


def test_every_end_of_a_look_up_as_drf_ends_it() -> None:
    thing = Thing()
    shaped = output_shaper(Gone)(thing)
    assert shaped == Gone(thing).data
    assert list(shaped) == list(Gone(thing).data)
    assert shaped == {
        "absent_null": None,
        "absent_default": "fallback",
        "called": "called",
        "deleted": None,
        "nested_own_way": {"name": "ONE"},
        "nested_many_own_way": [{"name": "TWO"}, {"name": "THREE"}],
    }


class Broken(serializers.Serializer):
    needed = serializers.CharField(source="nothing_here")


def test_a_required_value_missing_fails_as_in_drf() -> None:
    with pytest.raises(AttributeError):
        Broken(Thing()).data  # noqa: B018
    with pytest.raises(AttributeError):
        output_shaper(Broken)(Thing())
