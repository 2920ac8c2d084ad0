"""A batch the database refuses (a deadlock with another engine, a lock another holds, a
client order id taken meanwhile) is taken back in memory and retried: no book is read
again, the retry's answers are those of a first attempt, nothing is applied twice, and
memory equals the books read afresh. A batch that fails otherwise (a bug, the connection
lost) still has its markets read again."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError, ProgrammingError, connection

from orders.engine.market import MarketEngine
from orders.engine.types import Side
from orders.models import Order, Trade
from orders.sequencer import loop as sequencer_loop
from orders.sequencer.commands import cancel_command, place_command
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund
from tests.orders.invariants import assert_invariants

pytestmark = pytest.mark.django_db(transaction=True)  # real commits and rollbacks


class _Refused(Exception):
    """The driver's error under Django's: PostgreSQL's deadlock_detected."""

    sqlstate = "40P01"


def _place(user: Any, **fields: str) -> dict[str, Any]:
    return place_command(user_id=user.pk, fields={"market": "ETH-USDT", "type": "limit", **fields})


def _memory(engine: MarketEngine) -> tuple[Any, ...]:
    orders = sorted(engine.live.values(), key=lambda order: order.seq)
    return (
        [(o.id, o.status, o.filled_quantity, o.locked_amount, o.fee_paid) for o in orders],
        [o.id for o in engine.book.makers(taker_side=Side.BUY)],
        [o.id for o in engine.book.makers(taker_side=Side.SELL)],
        [o.id for o in engine.stops.orders()],
        engine.spec.last_price,
    )


@pytest.fixture
def counted_loads(monkeypatch):
    loads: list[str] = []
    real = sequencer_loop.market_engine_load

    def load(**kwargs: Any) -> MarketEngine:
        loads.append(kwargs["market"].symbol)
        return real(**kwargs)

    monkeypatch.setattr(sequencer_loop, "market_engine_load", load)
    return loads


def _write_failing(monkeypatch, error: Exception, *, times: int = 1) -> list[int]:
    """batch_write writes, then raises `error` (the transaction rolls back) `times` times."""
    calls: list[int] = []
    real = sequencer_loop.batch_write

    def write(**kwargs: Any) -> Any:
        written = real(**kwargs)
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise error
        return written

    monkeypatch.setattr(sequencer_loop, "batch_write", write)
    return calls


def test_a_batch_refused_by_the_database_is_taken_back_and_retried_without_reading_the_books(
    market, monkeypatch, counted_loads
):
    seller, buyer, stopper = UserFactory(), UserFactory(), UserFactory()
    fund(seller, "ETH", "1")
    fund(buyer, "USDT", "5000")
    fund(stopper, "ETH", "1")
    sequencer = Sequencer()
    sequencer.load()
    resting = sequencer.run_batch(
        [
            _place(seller, side="sell", quantity="0.1", price="1500.00"),
            _place(seller, side="sell", quantity="0.1", price="1501.00"),
            _place(seller, side="sell", quantity="0.1", price="1502.00"),
            _place(stopper, type="stop_loss", side="sell", quantity="0.05", stop_price="1400.00", time_in_force="IOC"),
        ]
    )
    assert [answer["status"] for answer in resting] == [201] * 4
    counted_loads.clear()
    deadlock = OperationalError("deadlock detected")
    deadlock.__cause__ = _Refused()
    calls = _write_failing(monkeypatch, deadlock)

    answers = sequencer.run_batch(
        [
            _place(buyer, side="buy", quantity="0.15", price="1501.00"),  # fills one maker, half another
            cancel_command(user_id=seller.pk, order_id=int(resting[2]["order"]["id"])),
        ]
    )

    assert calls == [1, 2]  # refused once, then written
    assert sequencer.taken_back == 1
    assert counted_loads == []  # memory taken back, no book read again
    assert [answer["status"] for answer in answers] == [201, 200]
    fills = answers[0]["order"]["fills"]
    assert [(fill["price"], fill["quantity"]) for fill in fills] == [
        ("1500.00000000", "0.10000000"),
        ("1501.00000000", "0.05000000"),
    ]
    assert Trade.objects.count() == 2  # once
    assert Order.objects.count() == 5
    fresh = Sequencer()
    fresh.load()
    assert _memory(sequencer.markets[0]) == _memory(fresh.markets[0])
    assert_invariants()


def _one_resting_sell_and_a_buyer() -> tuple[Sequencer, Any]:
    """A sequencer holding one resting sell of 0.1 ETH at 1,500, and a buyer with 5,000 USDT."""
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "1")
    fund(buyer, "USDT", "5000")
    sequencer = Sequencer()
    sequencer.load()
    sequencer.run_batch([_place(seller, side="sell", quantity="0.1", price="1500.00")])
    return sequencer, buyer


def test_a_batch_failing_otherwise_has_its_markets_read_again(market, monkeypatch, counted_loads):
    sequencer, buyer = _one_resting_sell_and_a_buyer()
    counted_loads.clear()
    _write_failing(monkeypatch, RuntimeError("a bug"))

    answers = sequencer.run_batch([_place(buyer, side="buy", quantity="0.1", price="1500.00")])

    assert answers[0]["status"] == 201  # recorded alone, in error (docs/matching.md)
    assert sequencer.taken_back == 0
    sequencer.run_batch([])  # the next batch reads the market again
    assert counted_loads == ["ETH-USDT"]
    fresh = Sequencer()
    fresh.load()
    assert _memory(sequencer.markets[0]) == _memory(fresh.markets[0])
    assert_invariants()


class _StatementsLost(Exception):
    """psycopg's InvalidSqlStatementName under Django's ProgrammingError: the server no
    longer knows a statement psycopg prepared on this connection (seen after a failover,
    right after a batch's late wallet lock was refused)."""

    sqlstate = "26000"


@pytest.mark.postgres
def test_a_batch_whose_prepared_statements_the_server_lost_runs_again_on_a_new_connection(market, monkeypatch):
    """Refused on its connection (nothing committed), isolated command by command on that
    same connection, the order failed again alone and was recorded `error` (its client
    answered 201 with a rejected order). Taken back and run again on a new connection, whose
    statements are prepared afresh, it is placed."""
    sequencer, buyer = _one_resting_sell_and_a_buyer()
    broken: list[Any] = []
    real = sequencer_loop.batch_write

    def write(**kwargs: Any) -> Any:
        if not broken:
            broken.append(connection.connection)
        if connection.connection is broken[0]:  # this connection's statements are gone
            lost = ProgrammingError('prepared statement "_pg3_49" does not exist')
            lost.__cause__ = _StatementsLost()
            raise lost
        return real(**kwargs)

    monkeypatch.setattr(sequencer_loop, "batch_write", write)

    [answer] = sequencer.run_batch([_place(buyer, side="buy", quantity="0.1", price="1500.00")])

    assert answer["status"] == 201 and answer["order"]["status"] == "filled", answer
    assert sequencer.taken_back == 1
    assert Trade.objects.count() == 1
    assert_invariants()


def test_a_batch_met_by_a_table_another_connection_reads_is_retried(market, monkeypatch):
    """SQLite with a shared cache (the suite's in-memory database, the engine in a thread
    beside its announcer) answers a write to a table another connection is reading with
    SQLITE_LOCKED, "database table is locked", not the busy "database is locked": the batch
    was refused (503) where a moment later it went through."""
    sequencer, buyer = _one_resting_sell_and_a_buyer()
    calls = _write_failing(monkeypatch, OperationalError("database table is locked: orders_trade"))

    answers = sequencer.run_batch([_place(buyer, side="buy", quantity="0.1", price="1500.00")])

    assert calls == [1, 2]
    assert [answer["status"] for answer in answers] == [201]
    assert Trade.objects.count() == 1
    assert_invariants()
