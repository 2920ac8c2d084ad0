"""orders.sequencer.arrays: the batch writer's array literals give back exactly the values
written (text with quotes, backslashes, braces, commas, NULL-looking words; decimals at the
column's limits; datetimes), and a batch written that way reads back as its orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from core.money import MAX_AMOUNT
from orders.engine.types import OrderStatus, Side
from orders.models import Order, OrderEvent, Trade, TradeOutbox, Wallet
from orders.sequencer.arrays import array_literal, ids_reserve, statements_pipelined, table_insert, table_update
from tests.orders.invariants import assert_invariants

pytestmark = pytest.mark.django_db

_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


def _round_trip(values: list[object], sql_type: str) -> list[object]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT unnest(%s::{sql_type}[])", [array_literal(values)])
        return [row[0] for row in cursor.fetchall()]


def test_the_literal_of_plain_values() -> None:
    assert array_literal([1, None, True, Decimal("1.50"), 'a"b\\c']) == '{1,NULL,t,1.50,"a\\"b\\\\c"}'
    assert array_literal([]) == "{}"


def test_the_literal_of_enum_members_and_decimals_in_exponent_form() -> None:
    # A column of one enum's members: their values, the first time and once its formatter is kept.
    for _ in range(2):
        assert array_literal([OrderStatus.OPEN, OrderStatus.FILLED]) == '{"open","filled"}'
        assert array_literal([Side.BUY, None, Side.SELL]) == '{"buy",NULL,"sell"}'
    assert array_literal([Side.BUY, 1, OrderStatus.OPEN]) == '{"buy",1,"open"}'
    # PostgreSQL reads numeric in exponent form (round trips: test_money_comes_back_exactly)
    assert array_literal([Decimal("1E+3"), Decimal("0E-8"), Decimal("1.50")]) == "{1E+3,0E-8,1.50}"


@pytest.mark.postgres
@settings(max_examples=150)
@given(st.lists(st.one_of(st.none(), _texts, st.sampled_from(["NULL", "null", "", " ", "{}", ",", '"', "\\"]))))
def test_text_comes_back_as_written(values: list[str | None]) -> None:
    assert _round_trip(list(values), "text") == values


@pytest.mark.postgres
@settings(max_examples=100)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.decimals(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT, places=8, allow_nan=False),
            st.sampled_from([Decimal(0), Decimal("1E+3"), Decimal("0.00000001"), MAX_AMOUNT, -MAX_AMOUNT]),
        ),
        max_size=20,
    )
)
def test_money_comes_back_exactly(values: list[Decimal | None]) -> None:
    assert _round_trip(list(values), "numeric(30,8)") == values


@pytest.mark.postgres
def test_datetimes_and_integers_come_back() -> None:
    moment = datetime(2026, 12, 3, 7, 30, 1, 123456, tzinfo=UTC)
    east = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert _round_trip([moment, None, east], "timestamptz") == [moment, None, moment]
    assert _round_trip([0, -1, 2**62, None], "bigint") == [0, -1, 2**62, None]


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError):
        array_literal([datetime(2026, 1, 1)])  # noqa: DTZ001


def test_orders_with_awkward_client_ids_are_written_and_read_back(market, trader) -> None:
    alice = trader(USDT="10000")
    awkward = ['q"uote', "back\\slash", "{brace},comma", "NULL", " spaced ", "ünïcødé ✓", "'single'"]
    for client_id in awkward:
        response = alice.order(side="buy", type="limit", quantity="0.1", price="1900.00", client_order_id=client_id)
        assert response.status_code == 201, response.content
        # Kept as sent, spaces included (OrderInput: client ids are not trimmed).
        assert response.json()["client_order_id"] == client_id
    stored = set(Order.objects.filter(user=alice.user).values_list("client_order_id", flat=True))
    assert stored == set(awkward)
    assert_invariants()


@pytest.mark.postgres
def test_reserved_ids_ascend_and_rows_written_with_them_read_back(market, trader) -> None:
    alice = trader(USDT="10000")
    response = alice.order(side="buy", type="limit", quantity="0.1", price="1900.00")
    assert response.status_code == 201, response.content
    placed = Order.objects.get(pk=int(response.json()["id"]))
    with transaction.atomic(), statements_pipelined():
        order_ids, trade_ids, none = ids_reserve([(Order, 3), (Trade, 2), (TradeOutbox, 0)])()
        assert order_ids == sorted(order_ids) and len(set(order_ids)) == 3 and min(order_ids) > placed.pk
        assert len(trade_ids) == 2 and none == []
        now = datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
        rows = [(placed.pk, "open", None, now), (placed.pk, "cancelled", 'a "reason"', now)]
        written = table_insert(OrderEvent, fields=("order", "status", "reason", "at"), rows=rows, returning=False)
        assert written == []
    events = list(OrderEvent.objects.filter(order=placed, at=now).order_by("pk").values_list("status", "reason"))
    assert events == [("open", None), ("cancelled", 'a "reason"')]


@pytest.mark.postgres
@pytest.mark.parametrize("increment", [1, 3])
def test_reserved_ids_are_the_ids_drawn_consecutive_or_not(increment) -> None:
    # Consecutive ids come back as their range; ids with gaps (another engine drawing at the
    # same time; here a sequence stepping by 3) come back one by one. Either way each id is
    # one the sequence gave and the next draw is past them.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [Order._meta.db_table])
        sequence = cursor.fetchone()[0]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER SEQUENCE {sequence} INCREMENT BY {increment}")
        for count in (1, 2, 5):
            with statements_pipelined():
                (ids,) = ids_reserve([(Order, count)])()
            assert len(ids) == count
            assert all(later - earlier == increment for earlier, later in pairwise(ids))
            with connection.cursor() as cursor:
                cursor.execute("SELECT nextval(%s)", [sequence])
                assert cursor.fetchone()[0] == ids[-1] + increment
        transaction.set_rollback(True)  # the sequence as it was (ALTER SEQUENCE is transactional)


@pytest.mark.postgres
def test_an_error_in_a_pipeline_is_a_django_error_and_rolls_the_transaction_back(market, trader) -> None:
    # The sequencer retries or isolates a batch on django.db errors: a failed statement of
    # the pipelined write must surface as one (here a wallet's check: locked <= balance).
    alice = trader(USDT="10")
    wallet = Wallet.objects.get(user=alice.user, asset__symbol="USDT", bucket=0)
    now = datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
    with pytest.raises(IntegrityError), transaction.atomic(), statements_pipelined():
        table_update(Wallet, fields=("locked", "updated_at"), rows=[(wallet.pk, Decimal(11), now)])
    wallet.refresh_from_db()
    assert wallet.locked == 0
