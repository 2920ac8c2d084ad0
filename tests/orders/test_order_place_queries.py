"""The number of queries of one order placement does not grow with the makers it fills.

Settlement writes trades, maker updates, events, outbox rows and wallet changes in bulk
statements, and the book is read in growing keyset pages (8, 32, 128, 512 rows ...), so a
placement costs a constant plus one query per page of makers it reads: logarithmic in
the makers filled, zero per maker.

Measured, the same on SQLite and PostgreSQL (in a test transaction, so SAVEPOINT and
RELEASE are counted, as is the stop check): a limit buy filling 1 maker 14 queries,
10 makers 15, 30 makers 15 (100 makers: 16 on PostgreSQL; SQLite splits bulk updates of
that size into batches); an order that rests 8 (no stop check: only a trade can fire a
stop); a cancel 8; a market order filled by book and house 15."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.models import Order
from orders.services.order_requests import OrderRequest
from orders.services.orders import order_cancel, order_place
from tests.factories import UserFactory, fund
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house, place

pytestmark = pytest.mark.django_db

# Everything but the book pages: savepoint, market lock (by symbol, with its assets),
# wallet lock (by key), fee discounts, wallets update, order insert, trades insert, last
# price, outbox insert, makers update, events insert, stop check, release. A wallet that
# does not exist yet (a trader's first order in an asset) adds 2: insert and lock again.
FILLING_BASE = 13
MEASURED = {1: 14, 10: 15, 30: 15}


def pages_read(makers: int, first: int = 8, growth: int = 4, largest: int = 512) -> int:
    """Keyset pages of `resting_makers` read to reach `makers` makers (at least one read)."""
    pages, size, seen = 1, first, first
    while seen < makers:
        pages += 1
        size = min(size * growth, largest)
        seen += size
    return pages


def book_of(makers: int) -> None:
    for index in range(makers):
        maker = UserFactory()  # every maker a different user: the most wallets to settle
        fund(maker, "ETH", "1")
        place(maker, side="sell", type="limit", quantity="0.1", price=f"{2000 + index % 7}.00")


def submit(user, **fields) -> int:
    return order_place(user=user, request=OrderRequest(market="ETH-USDT", **fields)).order_id


@pytest.fixture
def taker(market):
    user = UserFactory()
    fund(user, "USDT", "1000000")
    # One earlier trade: the taker's and the market's fee sub-wallets exist (the steady state).
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", quantity="0.1", price="1990.00")
    place(user, side="buy", type="market", quantity="0.1")
    return user


def test_pages_read():
    assert [pages_read(n) for n in (0, 1, 8, 9, 40, 41, 168, 169)] == [1, 1, 1, 2, 2, 3, 3, 4]


@pytest.mark.parametrize("makers", sorted(MEASURED))
def test_placement_queries_do_not_grow_per_maker(taker, makers, django_assert_max_num_queries):
    book_of(makers)
    bound = FILLING_BASE + pages_read(makers)  # + 0 per maker
    with django_assert_max_num_queries(bound) as captured:
        order_id = submit(taker, side="buy", type="limit", quantity=f"{makers * 0.1:.1f}", price="2100.00")
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.taker_trades.count()) == ("filled", makers)
    assert len(captured) == MEASURED[makers]
    assert_invariants()


def test_thirty_makers_cost_what_ten_cost(taker):
    counts = []
    for makers in (10, 30):
        book_of(makers)
        with CaptureQueriesContext(connection) as captured:
            order_id = submit(taker, side="buy", type="market", quantity=f"{makers * 0.1:.1f}")
        assert Order.objects.get(pk=order_id).taker_trades.count() == makers
        counts.append(len(captured))
    assert counts[0] == counts[1], counts
    assert_invariants()


def test_an_order_that_rests_and_its_cancel_are_constant(taker, django_assert_max_num_queries):
    book_of(3)
    with django_assert_max_num_queries(8):
        order_id = submit(taker, side="buy", type="limit", quantity="1", price="1000.00")
    assert Order.objects.get(pk=order_id).status == "open"
    with django_assert_max_num_queries(8):
        order_cancel(user=taker, order_id=order_id)
    assert Order.objects.get(pk=order_id).status == "cancelled"
    assert_invariants()


def test_a_house_fill_adds_one_read(taker, market, django_assert_max_num_queries):
    fund_house(market, base="10", quote="1")  # the house's sub-wallets exist
    book_of(3)
    with django_assert_max_num_queries(FILLING_BASE + pages_read(3) + 1):  # + the house inventory
        order_id = submit(taker, side="buy", type="market", quantity="0.4")
    order = Order.objects.get(pk=order_id)
    assert order.status == "filled"
    assert order.taker_trades.filter(is_house=True).count() == 1
    assert_invariants()


def test_a_maker_filled_again_costs_no_query_of_its_own(taker, django_assert_max_num_queries):
    """A maker already partially filled takes another partial fill (its status does not
    change): the columns written back were loaded with the book page, not one by one."""
    book_of(3)
    submit(taker, side="buy", type="market", quantity="0.25")  # 0.1 + 0.1 + 0.05 of the third
    (maker,) = Order.objects.filter(status="partially_filled")
    with django_assert_max_num_queries(FILLING_BASE + pages_read(1) + 1) as captured:  # + house inventory
        submit(taker, side="buy", type="market", quantity="0.02")
    maker.refresh_from_db()
    assert (maker.status, maker.filled_quantity) == ("partially_filled", Decimal("0.07"))
    # How Django loads a deferred column: the id and that one column, by id.
    deferred_load = re.compile(r'^SELECT "orders_order"\."id", "orders_order"\."\w+" FROM "orders_order" WHERE')
    assert [q["sql"] for q in captured.captured_queries if deferred_load.match(q["sql"])] == []
    assert_invariants()
