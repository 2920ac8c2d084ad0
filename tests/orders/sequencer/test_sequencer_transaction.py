"""A batch's transaction on PostgreSQL (orders.sequencer.arrays.BatchTransaction): BEGIN
queued with the first statement instead of sent and waited for on its own, COMMIT the
block's, what follows a commit run only after it; and a small batch's two waits for the
server (its reads, then its writes with COMMIT)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.db.transaction import TransactionManagementError
from psycopg import pq

from orders.models import Asset, Order, OrderEvent, Trade
from orders.sequencer.arrays import BatchTransaction, statements_pipelined
from orders.sequencer.commands import cancel_command, place_command
from orders.sequencer.loop import Sequencer
from orders.sequencer.writer import commit_sent
from tests.factories import UserFactory, fund, market_create
from tests.orders.invariants import assert_invariants
from tests.waiting import wait_until

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


SELL = {"market": "ETH-USDT", "side": "sell", "type": "limit", "quantity": "0.5", "price": "2000.00"}


def _two_traders(*, eth: str, usdt: str) -> tuple[Sequencer, Any, Any]:
    """ETH-USDT, a seller holding `eth` and a buyer holding `usdt`, the books loaded."""
    market_create("ETH-USDT")
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", eth)
    fund(buyer, "USDT", usdt)
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    return sequencer, seller, buyer


def _batch(sequencer: Sequencer, commands: list[dict[str, Any]], *, via: str) -> list[dict[str, Any]]:
    """A batch's answers, through BatchTransaction ("run") or atomic() ("run_batch": the path
    after a failure)."""
    if via == "run_batch":
        return sequencer.run_batch(commands)
    [(_, answers)] = sequencer.run(commands)
    return answers


def test_a_small_batch_sends_begin_with_its_reads_and_waits_for_the_server_twice(tmp_path):
    """BEGIN travels with the reads (no Sync before them): the batch's messages hold two
    Syncs, the reads' and the writes' (with COMMIT). psycopg's own BEGIN, in a transaction,
    is followed by a Sync and a wait of its own."""
    sequencer, seller, buyer = _two_traders(eth="1", usdt="5000")
    [(_, [rested])] = sequencer.run([place_command(user_id=seller.pk, fields=SELL)])  # statements known
    assert rested["status"] == 201
    stop = _traced(tmp_path / "trace.txt")
    try:
        buy = {**SELL, "side": "buy"}
        [(_, [taken])] = sequencer.run([place_command(user_id=buyer.pk, fields=buy, check_user=True)])
    finally:
        stop()
    assert taken["status"] == 201 and taken["order"]["status"] == "filled"
    messages = _frontend_messages(tmp_path / "trace.txt")
    syncs = [index for index, message in enumerate(messages) if message.startswith("Sync")]
    begins = [index for index, message in enumerate(messages) if '"BEGIN"' in message]
    commits = [index for index, message in enumerate(messages) if '"COMMIT"' in message]
    assert len(syncs) == 2, messages
    assert begins == [0]  # first, and in the same round trip as the reads that follow it
    assert sum(message.startswith("Execute") for message in messages[: syncs[0]]) >= 4  # BEGIN and the reads
    assert len(commits) == 1 and syncs[0] < commits[0] < syncs[1]
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


_ADVISORY_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.mark.parametrize("unflushed", [False, True])
def test_an_unflushed_block_writes_its_statements_when_its_results_are_read(unflushed):
    """A statement with an effect other sessions see at once (a session's advisory lock):
    psycopg writes it as it is executed; in an unflushed block (a batch's reads) it reaches
    the server with the rest, when the block's results are read."""
    key = 8_117_001
    try:
        with statements_pipelined(unflushed=unflushed):
            cursor = connection.cursor()
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            if unflushed:
                # Absence is watched over a window (0.5 s, where the flushed case sees the lock
                # within milliseconds), not read once.
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline:
                    assert _other_connection_sees(_ADVISORY_HELD, [key]) == (0,)
                    time.sleep(0.02)
            else:
                wait_until(lambda: _other_connection_sees(_ADVISORY_HELD, [key]) == (1,), what="the lock taken")
            cursor.execute("SELECT 1")
        assert cursor.fetchall() == [(1,)]  # read once the block has ended
        cursor.close()
        assert _other_connection_sees(_ADVISORY_HELD, [key]) == (1,)
        with statements_pipelined(unflushed=unflushed), connection.cursor() as cursor:
            cursor.execute("SELECT 2")
            assert cursor.fetchall() == [(2,)]  # a read inside the block writes what waits before it
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")
    pipeline = connection.connection._pipeline  # psycopg's step restored when the block ended
    assert pipeline is None or "_communicate_gen" not in vars(pipeline)


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
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        _other_connection_sees("SELECT pg_terminate_backend(%s, 10000)", [pid])
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # the connection is gone
    assert connection.connection is None  # dropped, as atomic() drops it
    with BatchTransaction(), statements_pipelined(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO orders_asset (symbol, name) VALUES ('ZZW', 'Again')")
        commit_sent()
    assert _other_connection_sees("SELECT name FROM orders_asset WHERE symbol = %s", ["ZZW"]) == ("Again",)


def _grown(model: Any, *, copies: int) -> None:
    """`copies` more of each row of `model`'s table, new ids, without ANALYZE (as a young
    table grows between two runs of autovacuum): plans cached before do not know."""
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(
        connection.ops.quote_name(field.column)
        for field in model._meta.concrete_fields
        if not field.primary_key and field.column != "client_order_id"
    )
    with connection.cursor() as cursor:
        sql = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}, generate_series(1, %s)"  # noqa: S608
        cursor.execute(sql, [copies])


@pytest.mark.parametrize("via", ["run", "run_batch"])  # BatchTransaction, and atomic() after a failure
def test_plans_prepared_while_the_tables_were_small_still_look_rows_up_by_key(via):
    """The batch's statements are prepared once per connection and planned once for it
    (psycopg names them; PostgreSQL keeps a generic plan). On a young database that plan was
    made while the tables held a few rows, where reading the whole table is cheapest, and
    it was kept while they grew (nothing invalidates it before autovacuum's first ANALYZE):
    the makers' update and a cancel's stored fills and events read every row, each batch
    slower than the one before. Planned inside a batch, they look the rows up by key.
    auto_explain (contrib) sends each executed plan to the client as a notice."""
    sequencer, maker, taker = _two_traders(eth="100", usdt="10000000")
    bid = {**SELL, "side": "buy", "quantity": "0.1", "price": "1000.00"}

    def batch(commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _batch(sequencer, commands, via=via)

    def round_trip() -> None:
        [rested] = batch([place_command(user_id=maker.pk, fields=SELL, check_user=True)])
        taken, resting = batch(
            [
                place_command(user_id=taker.pk, fields={**SELL, "side": "buy"}, check_user=True),
                place_command(user_id=taker.pk, fields=bid, check_user=True),
            ]
        )
        assert (rested["status"], taken["order"]["status"]) == (201, "filled"), (rested, taken)
        [cancelled] = batch([cancel_command(user_id=taker.pk, order_id=int(resting["order"]["id"]), check_user=True)])
        assert cancelled["order"]["status"] == "cancelled", cancelled

    for _ in range(8):  # past PostgreSQL's five custom plans: the generic one is kept
        round_trip()
    for model in (Order, OrderEvent, Trade):
        _grown(model, copies=400)
    plans = _plans_of(round_trip)
    batch_plans = [plan for plan in plans if "orders_order" in plan or "orders_trade" in plan]
    assert any("Update on orders_order" in plan for plan in batch_plans), plans
    assert any("orders_orderevent" in plan for plan in batch_plans), plans
    scans = [plan for plan in batch_plans if "Seq Scan on orders_" in plan]
    assert not scans, scans  # (the copied rows break the ledger's invariants: not checked here)


@pytest.mark.parametrize("via", ["run", "run_batch"])
def test_the_batch_statements_keep_their_generic_plan(via):
    """Planned once, executed by that plan after: by default PostgreSQL planned some of them
    again at each execution (the new ids' draw, the market's update), their generic plan
    estimated dearer than one for the values at hand. pg_prepared_statements counts both."""
    sequencer, maker, taker = _two_traders(eth="100", usdt="10000000")
    for _ in range(8):
        for commands in (
            [place_command(user_id=maker.pk, fields=SELL, check_user=True)],
            [place_command(user_id=taker.pk, fields={**SELL, "side": "buy"}, check_user=True)],
        ):
            answers = _batch(sequencer, commands, via=via)
            assert answers[0]["status"] == 201, answers
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        plans = cursor.fetchall()
    assert any("nextval" in statement for statement, _, _ in plans), plans  # the new ids' draw
    assert any(statement.startswith(f'UPDATE "{Order._meta.db_table}"') for statement, _, _ in plans), plans
    assert not [(statement, custom) for statement, _, custom in plans if custom], plans
    assert_invariants()


def _plans_of(action: Any) -> list[str]:
    """The plans of every statement `action` runs on this connection, as executed
    (auto_explain, contrib, with ANALYZE: a statement compiled by JIT says so)."""
    plans: list[str] = []
    connection.ensure_connection()
    raw = connection.connection

    def handler(diagnostic: Any) -> None:
        plans.append(diagnostic.message_primary or "")

    raw.add_notice_handler(handler)
    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        cursor.execute("SET auto_explain.log_analyze = on")
        cursor.execute("SET auto_explain.log_min_duration = 0")
        cursor.execute("SET auto_explain.log_level = 'notice'")
    try:
        action()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET auto_explain.log_min_duration = -1")
        raw.remove_notice_handler(handler)
    return plans


def _trade(sequencer: Sequencer, maker: Any, taker: Any, *, via: str) -> None:
    _batch(sequencer, [place_command(user_id=maker.pk, fields=SELL, check_user=True)], via=via)
    buy = place_command(user_id=taker.pk, fields={**SELL, "side": "buy"}, check_user=True)
    [taken] = _batch(sequencer, [buy], via=via)
    assert taken["order"]["status"] == "filled", taken


@pytest.mark.parametrize("via", ["run", "run_batch"])
def test_no_statement_of_a_batch_is_compiled_by_jit(via):
    """The batch plans by key: seq scans off, so that a plan left with one costs 10^10, far
    past `jit_above_cost`: such a statement would be compiled by JIT at each execution
    (35-90 ms here) inside the batch."""
    sequencer, maker, taker = _two_traders(eth="100", usdt="10000000")
    plans = _plans_of(lambda: _trade(sequencer, maker, taker, via=via))
    assert any("Insert on orders_trade" in plan for plan in plans), plans
    compiled = [plan for plan in plans if "JIT:" in plan]
    assert not compiled, compiled


@pytest.mark.django_db(transaction=False)
def test_the_batch_settings_compile_nothing_by_jit_after_it_in_an_enclosing_transaction():
    """A batch inside a transaction (a test's): its settings last to that transaction's end,
    and a statement whose only plan is a seq scan (`taker_user_id = maker_user_id`: no index
    serves it) cost 10^10 there, compiled by JIT at each execution: the stateful API test
    spent 150 of its 180 s doing so."""
    sequencer, maker, taker = _two_traders(eth="100", usdt="10000000")
    _trade(sequencer, maker, taker, via="run_batch")
    plans = _plans_of(lambda: Trade.objects.filter(taker_user_id=F("maker_user_id")).count())
    assert any("Seq Scan on orders_trade" in plan for plan in plans), plans
    compiled = [plan for plan in plans if "JIT:" in plan]
    assert not compiled, compiled
