"""The statements of one batch do not grow with the makers it fills (docs/matching.md,
"Query budget").

The book is in the sequencer's memory, so nothing is read per maker; a batch writes its
orders, trades, outbox rows, events, wallets and market prices with one multi-row
statement each, and locks wallets in at most two statements (what the commands name and
the makers they will likely meet at the start, makers beyond that guess with the write).

Measured in a test transaction (SAVEPOINT and RELEASE counted), a batch of one command:
a limit buy filling 1, 10 or 30 makers 14 statements on PostgreSQL, 13 on SQLite; 100
makers (more than the 64 guessed) one more, and 17 on SQLite, which splits statements
that large; an order that rests 9 (8);
a cancel 9 (the order found by id in memory, no read of it first; its answer built from
memory and its stored fills and events, read back by the write: two statements shared by
the batch's cancels, in the write's round trip on PostgreSQL); with a house fill, no more than a book fill (the
house's sub-wallets are locked with the taker's). PostgreSQL's one more is the batch's
reservation of the new rows' ids, which lets every write of the batch travel to the
server together (orders.sequencer.writer: three round trips for the write, not eight)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.api.serializers import order_output
from orders.engine.requests import OrderRequest
from orders.errors import OrderNotCancellable, OrderNotFound
from orders.models import Order
from orders.selectors.orders import order_get_for_user
from orders.sequencer.commands import ELSEWHERE, answers_merge, cancel_all_command, cancel_command, place_command
from orders.sequencer.loop import MAKERS_GUESSED, TRADES_DRAWN_PER_PLACE, Sequencer
from orders.services.orders import order_cancel, order_place
from tests.factories import UserFactory, fund
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house, place

pytestmark = pytest.mark.django_db

# savepoint, market rows re-read, wallets locked (by key: the taker's and the makers'
# guessed), fee discounts of the commands' users, fee discounts of the makers' owners, ids
# drawn with the reads (PostgreSQL), order insert, makers update, trades insert, outbox
# insert, events insert, wallets update, last price, release; the makers beyond the guess:
# one more lock.
FILLING = 14


def ids_reserved_with_the_write(trades: int) -> int:
    """A placement draws TRADES_DRAWN_PER_PLACE trade ids with its reads (PostgreSQL); more
    trades than that reserve the rest with the write: one statement more, in the round trip
    of the makers' late locks (the same number of round trips as before)."""
    return 1 if connection.vendor == "postgresql" and trades > TRADES_DRAWN_PER_PLACE else 0


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
    fund(user, "TTX", "1")  # the TTX asset exists (the steady state: its id is looked up once)
    # One earlier trade: the taker's and the market's fee sub-wallets exist (the steady state).
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", quantity="0.1", price="1990.00")
    place(user, side="buy", type="market", quantity="0.1")
    return user


@pytest.mark.parametrize("makers", [1, 10, 30, 100])
def test_placement_statements_do_not_grow_per_maker(taker, makers, django_assert_max_num_queries):
    book_of(makers)
    # SQLite splits multi-row inserts of that size into batches (its variable limit; its
    # updates are one executemany each, core.db.rows_update), and reserves no ids (it
    # inserts with RETURNING, statement by statement).
    sqlite = connection.vendor == "sqlite"
    bound = (
        FILLING
        + (1 if makers > MAKERS_GUESSED else 0)
        + (1 if makers > 30 and sqlite else 0)
        - (1 if sqlite else 0)
        + ids_reserved_with_the_write(makers)
    )
    with django_assert_max_num_queries(bound) as captured:
        order_id = submit(taker, side="buy", type="limit", quantity=f"{makers * 0.1:.1f}", price="2100.00")
    order = Order.objects.get(pk=order_id)
    assert (order.status, order.taker_trades.count()) == ("filled", makers)
    assert len(captured) == bound
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
    with django_assert_max_num_queries(9):  # 8 on SQLite (no ids reserved)
        order_id = submit(taker, side="buy", type="limit", quantity="1", price="1000.00")
    assert Order.objects.get(pk=order_id).status == "open"
    with django_assert_max_num_queries(9):
        order_cancel(user=taker, order_id=order_id)
    assert Order.objects.get(pk=order_id).status == "cancelled"
    assert_invariants()


def test_a_house_fill_costs_no_more_than_a_book_fill(taker, market, django_assert_max_num_queries):
    fund_house(market, base="10", quote="1")
    book_of(3)
    with django_assert_max_num_queries(FILLING + ids_reserved_with_the_write(4)):  # three book fills and the house's
        order_id = submit(taker, side="buy", type="market", quantity="0.4")
    order = Order.objects.get(pk=order_id)
    assert order.status == "filled"
    assert order.taker_trades.filter(is_house=True).count() == 1
    assert_invariants()


def test_a_maker_filled_again_costs_no_statement_of_its_own(taker, django_assert_max_num_queries):
    """A maker already partially filled takes another partial fill: it is in memory, and
    written back with the other orders of the batch."""
    book_of(3)
    submit(taker, side="buy", type="market", quantity="0.25")  # 0.1 + 0.1 + 0.05 of the third
    (maker,) = Order.objects.filter(status="partially_filled")
    with django_assert_max_num_queries(FILLING):
        submit(taker, side="buy", type="market", quantity="0.02")
    maker.refresh_from_db()
    assert (maker.status, maker.filled_quantity) == ("partially_filled", Decimal("0.07"))
    assert_invariants()


def test_a_cancel_of_an_order_the_engine_closed_reads_no_order_in_the_engine(taker, django_capture_on_commit_callbacks):
    """It filled before the cancel arrived (the load's common 409): the sequencer remembers
    the orders it closed (once committed), and the web tier sends the order id alone: no
    statement reads the order."""
    book_of(1)
    with django_capture_on_commit_callbacks(execute=True):
        order_id = submit(taker, side="buy", type="limit", quantity="0.1", price="2000.00")
    assert Order.objects.get(pk=order_id).status == "filled"
    with CaptureQueriesContext(connection) as captured, pytest.raises(OrderNotCancellable):
        order_cancel(user=taker, order_id=order_id)
    reads = [q["sql"] for q in captured.captured_queries if '"orders_order"' in q["sql"]]
    assert reads == [], reads
    # Someone else's order is not known as theirs: 404 as before.
    with pytest.raises(OrderNotFound):
        order_cancel(user=UserFactory(), order_id=order_id)


def test_a_cancel_of_an_order_closed_earlier_in_its_batch_reads_no_order(taker, market):
    seller = UserFactory()
    fund(seller, "ETH", "1")
    maker = place(seller, side="sell", type="limit", quantity="0.1", price="2000.00")
    sequencer = Sequencer()
    sequencer.load()
    commands = [
        place_command(
            user_id=taker.pk,
            fields={"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "2000.00"},
        ),
        cancel_command(user_id=seller.pk, order_id=maker.pk, market_id=market.pk),
    ]
    with CaptureQueriesContext(connection) as captured:
        answers = sequencer.run_batch(commands)
    assert [answer["status"] for answer in answers] == [201, 409]
    assert answers[1]["error"]["code"] == "order_not_cancellable"
    reads = [
        q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT") and '"orders_order"' in q["sql"]
    ]
    assert reads == [], reads
    assert_invariants()


def test_a_cancel_by_id_alone_answers_the_order_as_read_back(taker, market):
    """The web tier sends no market: a fresh sequencer (no market loaded) finds the order in
    one read for its batch, loads its market, cancels it and answers the contract's body,
    fills and events included, as GET /api/orders/{id} answers it."""
    book_of(1)
    order_id = submit(taker, side="buy", type="limit", quantity="0.3", price="2000.00")  # 0.1 filled, rests
    other_id = submit(taker, side="buy", type="limit", quantity="1", price="1000.00")
    sequencer = Sequencer()
    commands = [
        cancel_command(user_id=taker.pk, order_id=order_id),
        cancel_command(user_id=taker.pk, order_id=other_id),
        cancel_command(user_id=taker.pk, order_id=order_id),  # closed earlier in the batch
        cancel_command(user_id=UserFactory().pk, order_id=other_id),  # someone else's
        cancel_command(user_id=taker.pk, order_id=10**9),  # none
    ]
    answers = sequencer.run_batch(commands)
    assert [answer["status"] for answer in answers] == [200, 200, 409, 404, 404]
    for answer, pk in zip(answers[:2], (order_id, other_id), strict=False):
        assert answer["order"] == order_output(order_get_for_user(user_id=taker.pk, order_id=pk))
    body = answers[0]["order"]
    assert (body["status"], body["filled_quantity"], len(body["fills"])) == ("cancelled", "0.10000000", 1)
    assert [event["status"] for event in body["events"]][-1] == "cancelled"
    assert_invariants()


def test_a_cancel_after_fills_in_its_own_batch_answers_the_order_as_read_back(taker, market):
    """The cancelled order traded earlier in the same batch, as a maker and (another one)
    as a taker: its answer shows those fills and events too, as reading it back does."""
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "1")
    maker_id = submit(seller, side="sell", type="limit", quantity="0.5", price="2000.00")
    resting_id = submit(taker, side="buy", type="limit", quantity="1", price="1000.00")
    sequencer = Sequencer()
    sequencer.load()
    fields = {"market": "ETH-USDT", "type": "limit", "quantity": "0.2"}
    commands = [
        place_command(user_id=buyer.pk, fields={**fields, "side": "buy", "price": "2000.00"}),
        place_command(user_id=seller.pk, fields={**fields, "side": "sell", "price": "1000.00"}),
        cancel_command(user_id=seller.pk, order_id=maker_id),
        cancel_command(user_id=taker.pk, order_id=resting_id, market_id=market.pk),
    ]
    fund(buyer, "USDT", "1000")
    answers = sequencer.run_batch(commands)
    assert [answer["status"] for answer in answers] == [201, 201, 200, 200]
    for answer, (user, pk) in zip(answers[2:], ((seller, maker_id), (taker, resting_id)), strict=True):
        assert answer["order"] == order_output(order_get_for_user(user_id=user.pk, order_id=pk))
    assert [len(answer["order"]["fills"]) for answer in answers[2:]] == [1, 1]
    assert [fill["liquidity"] for answer in answers[2:] for fill in answer["order"]["fills"]] == ["maker", "maker"]
    assert_invariants()


def test_a_shard_that_does_not_hold_the_order_says_so_and_the_holder_answers(taker, market):
    order_id = submit(taker, side="buy", type="limit", quantity="1", price="1000.00")
    command = cancel_command(user_id=taker.pk, order_id=order_id)
    (elsewhere,) = Sequencer(excluded={"ETH-USDT"}).run_batch([command])
    assert (elsewhere["status"], elsewhere[ELSEWHERE]) == (404, True)
    assert Order.objects.get(pk=order_id).status == "open"
    (held,) = Sequencer(symbols={"ETH-USDT"}).run_batch([command])
    assert answers_merge(command, [elsewhere, held]) == held and held["status"] == 200
    assert answers_merge(command, [held, elsewhere]) == held
    (again,) = Sequencer(symbols={"ETH-USDT"}).run_batch([command])
    assert answers_merge(command, [elsewhere, again])["status"] == 409
    assert ELSEWHERE not in answers_merge(command, [elsewhere, elsewhere])


def test_merged_cancel_answers_prefer_the_holder_then_a_silent_shard():
    command = cancel_command(user_id=1, order_id=2)
    ok, gone = {"status": 200, "order_id": 2, "order": {}}, {"status": 409, "error": {"code": "order_not_cancellable"}}
    missing = {"status": 404, "error": {"code": "order_not_found"}, ELSEWHERE: True}
    down = {"status": 503, "error": {"code": "service_unavailable"}}
    assert answers_merge(command, [missing, down, ok]) == ok
    assert answers_merge(command, [missing, gone, down]) == gone
    assert answers_merge(command, [missing, down]) == down  # the holder may be the silent one
    assert answers_merge(command, [missing, missing]) == {"status": 404, "error": {"code": "order_not_found"}}
    every = cancel_all_command(user_id=1, market_id=None)
    assert answers_merge(every, [{"status": 200, "order_ids": [3]}, {"status": 200, "order_ids": [4]}]) == {
        "status": 200,
        "order_ids": [3, 4],
    }
    assert answers_merge(every, [{"status": 200, "order_ids": [3]}, down]) == down
