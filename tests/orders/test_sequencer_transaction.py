"""A batch's transaction on PostgreSQL (orders.sequencer.arrays.BatchTransaction): BEGIN
queued with the first statement instead of sent and waited for on its own, COMMIT the
block's, what follows a commit run only after it; and a small batch's two waits for the
server (its reads, then its writes with COMMIT)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.db.transaction import TransactionManagementError
from psycopg import pq

from orders.models import Asset, Order
from orders.sequencer.arrays import BatchTransaction, statements_pipelined
from orders.sequencer.commands import place_command
from orders.sequencer.loop import Sequencer
from orders.sequencer.writer import commit_sent
from tests.factories import UserFactory, fund, market_create
from tests.orders.invariants import assert_invariants

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _frontend_messages(path: Path) -> list[str]:
    """What the client sent, from libpq's trace: one line per protocol message."""
    sent = [line.split("\t", 3) for line in path.read_text().splitlines() if line.startswith("F\t")]
    return [f"{parts[2]} {parts[3] if len(parts) > 3 else ''}" for parts in sent]


def _traced(path: Path) -> Any:
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    handle = path.open("w")
    pgconn.trace(handle.fileno())
    pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def stop() -> None:
        pgconn.untrace()
        handle.close()

    return stop


def _other_connection_sees(sql: str, params: list[Any]) -> Any:
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"], host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"]
    ) as other:
        return other.execute(sql, params).fetchone()


def test_a_small_batch_waits_for_the_server_twice_begin_with_its_reads(tmp_path):
    """On the wire (libpq's trace): a small batch is two messages, two waits; BEGIN travels
    with the reads, COMMIT with the writes. (psycopg's own BEGIN, in a transaction, is a
    message and a wait of its own, and its pipeline a Sync and a wait per read in between.)"""
    market_create("ETH-USDT")
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "1")
    fund(buyer, "USDT", "5000")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    sell = {"market": "ETH-USDT", "side": "sell", "type": "limit", "quantity": "0.25", "price": "2000.00"}
    buy = {**sell, "side": "buy"}
    answers = []
    for traced in (False, True):  # the first trade prepares its statements (a message each, once per connection)
        [(_, [rested])] = sequencer.run([place_command(user_id=seller.pk, fields=sell)])
        stop = _traced(tmp_path / "trace.txt") if traced else None
        try:
            [(_, [taken])] = sequencer.run([place_command(user_id=buyer.pk, fields=buy, check_user=True)])
        finally:
            if stop is not None:
                stop()
        answers += [rested, taken]
    assert [(answer["status"], answer["order"]["status"]) for answer in answers[1::2]] == [(201, "filled")] * 2
    messages = _frontend_messages(tmp_path / "trace.txt")
    assert [message.split(" ", 1)[0] for message in messages] == ["Query", "Query"], messages
    reads, writes = (message.split(" ", 1)[1].strip().strip('"') for message in messages)
    assert reads.startswith("BEGIN;") and "EXECUTE" in reads, reads[:80]
    assert writes.endswith("COMMIT") and "EXECUTE" in writes, writes[-80:]
    assert_invariants()


def test_what_follows_runs_once_committed_and_the_rows_are_there_for_others():
    done: list[str] = []
    with BatchTransaction() as batch, statements_pipelined():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO orders_asset (symbol, name) VALUES ('ZZZ', 'Zed')")
        batch.on_commit(lambda: done.append("first"))
        batch.on_commit(lambda: done.append("second"))
        commit_sent()
        assert done == []  # not before COMMIT's answer
    assert done == ["first", "second"]
    assert _other_connection_sees("SELECT name FROM orders_asset WHERE symbol = %s", ["ZZZ"]) == ("Zed",)
    assert connection.connection.pgconn.transaction_status == pq.TransactionStatus.IDLE


def test_a_block_that_fails_is_rolled_back_and_what_follows_never_runs():
    done: list[str] = []
    with pytest.raises(RuntimeError), BatchTransaction() as batch:
        with statements_pipelined(), connection.cursor() as cursor:
            cursor.execute("INSERT INTO orders_asset (symbol, name) VALUES ('ZZZ', 'Zed')")
        batch.on_commit(lambda: done.append("ran"))
        raise RuntimeError("the batch failed after its writes")
    assert done == []
    assert not Asset.objects.filter(symbol="ZZZ").exists()
    assert connection.connection.pgconn.transaction_status == pq.TransactionStatus.IDLE
    Asset.objects.create(symbol="ZZY", name="Next")  # the connection serves on, in autocommit
    assert _other_connection_sees("SELECT name FROM orders_asset WHERE symbol = %s", ["ZZY"]) == ("Next",)


def test_a_statement_the_server_refuses_rolls_the_whole_block_back():
    with pytest.raises(DatabaseError), BatchTransaction(), statements_pipelined(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders_asset (symbol, name) VALUES ('ZZZ', 'Zed')")
        cursor.execute("INSERT INTO orders_asset (symbol, name) VALUES ('ZZZ', 'Twice')")  # unique symbol
        commit_sent()
    assert not Asset.objects.filter(symbol="ZZZ").exists()
    assert connection.connection.pgconn.transaction_status == pq.TransactionStatus.IDLE


def test_a_block_that_ends_without_its_commit_is_rolled_back_and_says_so():
    done: list[str] = []
    with pytest.raises(DatabaseError, match="without its COMMIT"), BatchTransaction() as batch:
        with connection.cursor() as cursor:  # outside a pipeline: BEGIN sent before it all the same
            cursor.execute("INSERT INTO orders_asset (symbol, name) VALUES ('ZZZ', 'Zed')")
        batch.on_commit(lambda: done.append("ran"))
    assert done == [] and not Asset.objects.filter(symbol="ZZZ").exists()


def test_a_block_without_statements_sends_nothing_and_runs_what_follows(tmp_path):
    done: list[str] = []
    stop = _traced(tmp_path / "trace.txt")
    try:
        with BatchTransaction() as batch:
            batch.on_commit(lambda: done.append("ran"))
    finally:
        stop()
    assert done == ["ran"] and _frontend_messages(tmp_path / "trace.txt") == []


def test_what_follows_that_fails_is_logged_and_the_rest_runs(caplog):
    done: list[str] = []

    def failing() -> None:
        raise ValueError("a hook's bug")

    with (
        caplog.at_level(logging.ERROR, logger="orders.sequencer.arrays"),
        BatchTransaction() as batch,
        statements_pipelined(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT 1")
        batch.on_commit(failing)
        batch.on_commit(lambda: done.append("after"))
        commit_sent()
    assert done == ["after"]
    assert "on_commit work failed" in caplog.text


def test_it_is_the_outermost_transaction_as_a_durable_atomic_block_is():
    with transaction.atomic(), pytest.raises(TransactionManagementError), BatchTransaction():
        pass


def test_a_transaction_left_open_on_the_connection_is_rolled_back_first(caplog):
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("BEGIN")
    raw.execute("INSERT INTO orders_asset (symbol, name) VALUES ('ZZX', 'Left open')")
    with (
        caplog.at_level(logging.WARNING, logger="orders.sequencer.arrays"),
        BatchTransaction(),
        statements_pipelined(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT 1")
        commit_sent()
    assert "left open" in caplog.text
    assert not Asset.objects.filter(symbol="ZZX").exists()


def test_a_connection_lost_in_the_block_is_dropped_and_the_next_block_connects_again():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    with pytest.raises(DatabaseError), BatchTransaction():
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        _other_connection_sees("SELECT pg_terminate_backend(%s, 10000)", [pid])
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # the connection is gone
    assert connection.connection is None  # dropped, as atomic() drops it
    with BatchTransaction(), statements_pipelined(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders_asset (symbol, name) VALUES ('ZZW', 'Again')")
        commit_sent()
    assert Asset.objects.filter(symbol="ZZW").exists()
    assert Order.objects.count() == 0


def test_statements_deallocated_behind_its_back_cost_one_batch_its_joined_send_not_its_answers():
    """DISCARD ALL or DEALLOCATE from elsewhere (a pooler, an operator): the batch that
    meets it runs again as any batch (201 all the same); the next ones prepare again."""
    market_create("ETH-USDT")
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "1")
    fund(buyer, "USDT", "5000")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    sell = {"market": "ETH-USDT", "side": "sell", "type": "limit", "quantity": "0.1", "price": "2000.00"}
    buy = {**sell, "side": "buy"}
    sent: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append(sql)
        return execute(sql, params, many, context)

    answers = []
    for round_ in range(3):
        if round_ == 1:
            connection.connection.execute("DEALLOCATE ALL")
        sent.clear()
        with connection.execute_wrapper(record):
            [(_, [rested])] = sequencer.run([place_command(user_id=seller.pk, fields=sell)])
            [(_, [taken])] = sequencer.run([place_command(user_id=buyer.pk, fields=buy)])
        answers += [(rested["status"], taken["status"], taken["order"]["status"])]
    assert answers == [(201, 201, "filled")] * 3
    assert len(sent) == 4 and all("EXECUTE batch_" in message for message in sent)  # joined again
    assert_invariants()
