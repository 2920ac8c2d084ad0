"""Batches overlapped (Sequencer.run_overlapped, PostgreSQL): the next batch is applied in
memory while the one before it commits, on the values the sequencer knows, then checked
against what its own reads find once that one has landed. A smaller batch (Sequencer.run
below ENGINE_OVERLAP_MIN_COMMANDS) is sent the same way, its COMMIT queued behind its
writes, and landed at once."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal as D
from typing import Any

import psycopg
import pytest
from django.db import connections

from accounts.credentials import password_mark
from orders.models import Market, Order, Wallet
from orders.sequencer import loop, writer
from orders.sequencer.commands import cancel_command, place_command
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BATCHES = 14
BATCH = 8


def _traders(count: int, *, base: str) -> list[Any]:
    users = [UserFactory() for _ in range(count)]
    for user in users:
        fund(user, "USDT", "50000")
        fund(user, base, "20")
    return users


def _stream(seed: int, *, symbol: str) -> list[list[tuple[str, int, dict[str, str]]]]:
    """Batches of (kind, trader index, fields); a cancel names the command (batch, position)
    whose order it cancels, two batches back at least (answered by then in both modes)."""
    rnd = random.Random(seed)
    batches: list[list[tuple[str, int, dict[str, str]]]] = []
    for number in range(BATCHES):
        batch: list[tuple[str, int, dict[str, str]]] = []
        for _ in range(BATCH):
            trader = rnd.randrange(4)
            roll = rnd.random()
            if roll < 0.15 and number >= 2:
                target = (rnd.randrange(number - 1), rnd.randrange(BATCH))
                batch.append(("cancel", trader, {"batch": str(target[0]), "position": str(target[1])}))
                continue
            fields = {"market": symbol, "side": rnd.choice(("buy", "sell")), "quantity": f"0.{rnd.randint(1, 30):04d}"}
            if roll < 0.75:
                fields |= {"type": "limit", "price": f"{2000 + rnd.randint(-5, 5)}.00", "time_in_force": "GTC"}
            elif roll < 0.9:
                fields |= {"type": "market", "time_in_force": "IOC"}
            else:
                fields |= {"type": "limit", "price": f"{2000 + rnd.randint(-5, 5)}.00", "time_in_force": "FOK"}
            batch.append(("place", trader, fields))
        batches.append(batch)
    return batches


def _commands(
    batch: list[tuple[str, int, dict[str, str]]], users: list[Any], answered: dict[tuple[int, int], dict[str, Any]]
) -> list[dict[str, Any]]:
    commands = []
    for kind, trader, fields in batch:
        user = users[trader]
        if kind == "cancel":
            answer = answered.get((int(fields["batch"]), int(fields["position"])), {})
            order_id = int(answer.get("order", {}).get("id") or 0)
            commands.append(cancel_command(user_id=user.pk, order_id=order_id or 10**9))
        else:
            commands.append(place_command(user_id=user.pk, fields=fields))
    return commands


def _shape(answer: dict[str, Any]) -> tuple[Any, ...]:
    """What an answer says, without ids and times (which differ between two runs)."""
    order = answer.get("order") or {}
    fills = tuple((fill["price"], fill["quantity"], fill["fee"], fill["liquidity"]) for fill in order.get("fills", ()))
    return (
        answer["status"],
        (answer.get("error") or {}).get("code"),
        order.get("status"),
        order.get("filled_quantity"),
        fills,
    )


def _run(users: list[Any], *, symbol: str, mode: str) -> tuple[Sequencer, list[tuple[Any, ...]]]:
    """mode: "overlapped" (run_overlapped), "serial" (run_batch) or "landed" (run, each
    batch below the overlap's threshold: sent with its COMMIT, landed at once)."""
    sequencer = Sequencer(symbols={symbol})
    sequencer.load()
    answered: dict[tuple[int, int], dict[str, Any]] = {}
    sent: list[list[dict[str, Any]]] = []

    def record(finished: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> None:
        for commands, answers in finished:
            number = next(index for index, batch in enumerate(sent) if batch is commands)
            for position, answer in enumerate(answers):
                answered[(number, position)] = answer

    for batch in _stream(seed=11, symbol=symbol):
        commands = _commands(batch, users, answered)
        sent.append(commands)
        if mode == "overlapped":
            record(sequencer.run_overlapped(commands))
        elif mode == "landed":
            record(sequencer.run(commands))
        else:
            record([(commands, sequencer.run_batch(commands))])
    record(sequencer.flush())
    assert len(answered) == BATCHES * BATCH
    return sequencer, [_shape(answered[key]) for key in sorted(answered)]


def _books(sequencer: Sequencer) -> list[tuple[Any, ...]]:
    [engine] = sequencer.markets
    return sorted((o.id, o.side.value, o.price, o.remaining, o.status.value) for o in engine.live.values())


def _balances(users: list[Any], *, base: str) -> list[tuple[Any, ...]]:
    rows = {(w.user_id, w.asset.symbol): (w.balance, w.locked) for w in Wallet.objects.filter(user__in=users, bucket=0)}
    return [(index, rows[(user.pk, base)], rows[(user.pk, "USDT")]) for index, user in enumerate(users)]


def test_overlapped_batches_answer_and_store_what_one_batch_at_a_time_does():
    # Two markets alike, each with four traders funded alike: the same stream overlapped in
    # one and one batch at a time in the other.
    market_create("ETH-USDT", reference_price="2000.00")
    market_create("BTC-USDT", reference_price="2000.00")
    eth_traders, btc_traders = _traders(4, base="ETH"), _traders(4, base="BTC")

    overlapped, answers = _run(eth_traders, symbol="ETH-USDT", mode="overlapped")
    _, serial = _run(btc_traders, symbol="BTC-USDT", mode="serial")

    assert overlapped.ahead_applied >= BATCHES - 2  # the overlap did happen ...
    assert overlapped.ahead_again == 0  # ... and nothing changed the rows behind its back
    assert answers == serial
    assert _balances(eth_traders, base="ETH") == _balances(btc_traders, base="BTC")
    _memory_is_the_database(overlapped)


def _deposit(user: Any, amount: str) -> None:
    try:
        fund(user, "USDT", amount)
    finally:
        connections.close_all()


def test_a_deposit_committed_between_two_batches_is_seen_by_the_batch_applied_ahead():
    market_create("ETH-USDT")
    maker, poor = UserFactory(), UserFactory()
    fund(maker, "ETH", "5")
    fund(poor, "USDT", "100")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    buy = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "1.0000", "price": "2000.00"}
    # Each trader's wallets become known to the sequencer (read by a batch of theirs); the
    # maker's batch (not crossing the poor trader's order) is then on its way.
    assert sequencer.run_overlapped([place_command(user_id=poor.pk, fields={**buy, "quantity": "0.0100"})]) == []
    sell = {"market": "ETH-USDT", "side": "sell", "type": "limit", "quantity": "0.0100", "price": "2100.00"}
    [(_, [first])] = sequencer.run_overlapped([place_command(user_id=maker.pk, fields=sell)])
    assert first["status"] == 201

    # Another connection commits a deposit meanwhile (this thread's is the sequencer's,
    # its batch's COMMIT on the way).
    depositor = threading.Thread(target=_deposit, args=(poor, "5000"))
    depositor.start()
    depositor.join(timeout=30)

    done = sequencer.run_overlapped([place_command(user_id=poor.pk, fields=buy)])
    [(_, [placed_sell])] = done
    assert placed_sell["status"] == 201
    [(_, [placed_buy])] = sequencer.flush()
    # Applied ahead on the balance known before the deposit (100 USDT, 20 of it locked) it
    # was refused; its reads found the deposit, so it was applied again and accepted.
    assert sequencer.ahead_applied == 1
    assert sequencer.ahead_again == 1
    assert placed_buy["status"] == 201, placed_buy
    assert_invariants()


def _reference_price_changed(symbol: str, price: str) -> None:
    """As the engine of another shard changes it (its own connection and transaction)."""
    try:
        Market.objects.filter(symbol=symbol).update(reference_price=D(price))
    finally:
        connections.close_all()


def test_a_dollar_rate_changed_while_a_batch_commits_is_seen_by_the_batch_applied_ahead():
    """ETH-BTC's house cap is 500 USD at BTC-USDT's reference price: a batch applied ahead
    assumes the rate the last batch read; when BTC-USDT's reference changed meanwhile (on
    another shard) its reads find it, and it is applied again with the new cap."""
    market_create("BTC-USDT", reference_price="60000.00")
    eth_btc = market_create(
        "ETH-BTC", price_tick="0.00001", quantity_step="0.001", min_quantity="0.001", reference_price="0.05000"
    )
    fund_house(eth_btc, base="1000", quote="100")
    taker = UserFactory()
    fund(taker, "BTC", "5")
    sequencer = Sequencer(symbols={"ETH-BTC"})
    sequencer.load()
    buy = {"market": "ETH-BTC", "side": "buy", "type": "market", "quantity": "10"}

    def place() -> list[tuple[Any, list[dict[str, Any]]]]:
        return sequencer.run_overlapped([place_command(user_id=taker.pk, fields=buy)])

    assert place() == []  # on its way, the rate read (0.00833333 BTC: 0.165 ETH)
    changer = threading.Thread(target=_reference_price_changed, args=("BTC-USDT", "30000.00"))
    changer.start()
    changer.join(timeout=30)
    [(_, [first])] = place()  # applied ahead at 60000, then read 30000
    [(_, [second])] = place()  # applied ahead at 30000, as read
    [(_, [third])] = sequencer.flush()
    assert [answer["order"]["filled_quantity"] for answer in (first, second, third)] == [
        "0.16500000",
        "0.33100000",
        "0.33100000",
    ]
    assert (sequencer.ahead_applied, sequencer.ahead_again) == (2, 1)
    assert_invariants()


def _fault_before_commit(monkeypatch, sql: str) -> list[str]:
    """The first batch written with its COMMIT sent fails on `sql`, queued before COMMIT."""
    injected: list[str] = []
    real = writer.histories_read

    def histories_read(order_ids: list[int]) -> Any:
        if not injected:
            injected.append(sql)
            with connections["default"].cursor() as cursor:
                cursor.execute(sql)
        return real(order_ids)

    monkeypatch.setattr(writer, "histories_read", histories_read)
    return injected


_SELL = {"market": "ETH-USDT", "side": "sell", "type": "limit", "quantity": "0.0100", "price": "2001.00"}
_BUY = {**_SELL, "side": "buy"}


def _memory_is_the_database(sequencer: Sequencer) -> None:
    """The invariants hold, and the books in memory are what a fresh load of the database reads."""
    assert_invariants()
    reloaded = Sequencer(symbols={"ETH-USDT"})
    reloaded.load()
    assert _books(sequencer) == _books(reloaded)


def _two_overlapped(sequencer: Sequencer, users: list[Any]) -> list[dict[str, Any]]:
    finished = sequencer.run_overlapped([place_command(user_id=users[0].pk, fields=_SELL)])
    finished += sequencer.run_overlapped([place_command(user_id=users[1].pk, fields=_BUY)])  # applied ahead
    finished += sequencer.flush()
    return [answer for _, answers in finished for answer in answers]


def test_a_batch_the_server_refuses_when_it_lands_is_run_again_with_the_one_applied_ahead(monkeypatch):
    market_create("ETH-USDT")
    users = _traders(2, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    _two_overlapped(sequencer, users)  # every wallet known
    # Refused by the server at COMMIT (a deferred foreign key broken), so it surfaces when
    # the batch lands, after the next one was applied ahead.
    _fault_before_commit(
        monkeypatch, "INSERT INTO orders_orderevent (order_id, status, reason, at) VALUES (-1, 'open', NULL, now())"
    )
    ahead_before = sequencer.ahead_applied
    answers = _two_overlapped(sequencer, users)
    assert [answer["status"] for answer in answers] == [201, 201]
    assert answers[1]["order"]["status"] == "filled"  # the buy met the sell, run again before it
    assert sequencer.ahead_applied == ahead_before + 1  # the buy was applied ahead, then taken back
    assert sequencer.taken_back == 1
    _memory_is_the_database(sequencer)


def test_a_batch_that_fails_otherwise_is_run_again_from_the_database(monkeypatch):
    market_create("ETH-USDT")
    users = _traders(2, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    _two_overlapped(sequencer, users)
    _fault_before_commit(monkeypatch, "SELECT 1 / 0")  # met when written or when it lands: either way
    answers = _two_overlapped(sequencer, users)
    assert [answer["status"] for answer in answers] == [201, 201]
    assert answers[1]["order"]["status"] == "filled"
    assert sequencer.taken_back == 0  # not taken back: the markets were read again
    _memory_is_the_database(sequencer)


def _terminate(pid: int) -> None:
    try:
        with connections["default"].cursor() as cursor:
            # With a timeout, it returns once the backend has ended (or fails after 10 s).
            cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
    finally:
        connections.close_all()


def _terminate_once_committed(pid: int, *, user_id: int, orders: int, done: list[int]) -> None:
    """Once the user has `orders` orders (the batch's COMMIT landed), end its session; `done`
    gets the pid then (within 10 s, or never)."""
    deadline = time.monotonic() + 10
    try:
        while Order.objects.filter(user_id=user_id).count() < orders and time.monotonic() < deadline:
            time.sleep(0.005)
        committed = Order.objects.filter(user_id=user_id).count() >= orders
    finally:
        connections.close_all()
    if committed:
        _terminate(pid)
        done.append(pid)


def _batch_pid() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    return int(pid)


def test_a_batch_whose_connection_is_lost_after_it_committed_is_answered_as_committed():
    market_create("ETH-USDT")
    users = _traders(2, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    _two_overlapped(sequencer, users)
    pid, before = _batch_pid(), Order.objects.filter(user=users[0]).count()
    assert sequencer.run_overlapped([place_command(user_id=users[0].pk, fields=_SELL)]) == []  # COMMIT sent
    ended: list[int] = []
    killer = threading.Thread(
        target=_terminate_once_committed,
        args=(pid,),
        kwargs={"user_id": users[0].pk, "orders": before + 1, "done": ended},
    )
    killer.start()
    killer.join(timeout=30)
    assert ended == [pid]  # committed, then its session ended before the engine read COMMIT's answer
    [(_, [sell])] = sequencer.flush()
    # The COMMIT's answer went with the connection: the engine asks the database, which has
    # the order. It answered 503 (a client without a client order id then placed again).
    assert sell["status"] == 201, sell
    assert Order.objects.filter(user=users[0]).count() == before + 1
    connections["default"].close()  # as the engine process does before its next batch
    [(_, [buy])] = sequencer.run_overlapped([place_command(user_id=users[1].pk, fields=_BUY)]) or sequencer.flush()
    assert buy["status"] == 201 and buy["order"]["status"] == "filled"  # memory read again: the sell rests
    _memory_is_the_database(sequencer)


def test_a_batch_whose_connection_is_lost_before_it_committed_is_run_again(monkeypatch):
    market_create("ETH-USDT")
    users = _traders(2, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    _two_overlapped(sequencer, users)
    pid, before = _batch_pid(), Order.objects.filter(user=users[0]).count()
    monkeypatch.setattr(loop, "commit_sent", lambda: None)  # its COMMIT never leaves
    assert sequencer.run_overlapped([place_command(user_id=users[0].pk, fields=_SELL)]) == []
    monkeypatch.undo()
    killer = threading.Thread(target=_terminate, args=(pid,))
    killer.start()
    killer.join(timeout=30)
    [(_, [sell])] = sequencer.flush()
    # The server rolled it back with the session: the engine, told so by the database, runs
    # it again (it answered 503, and the client had to find out whether it was placed).
    assert sell["status"] == 201, sell
    assert Order.objects.filter(user=users[0]).count() == before + 1  # once
    _memory_is_the_database(sequencer)


def test_a_batch_whose_outcome_cannot_be_told_answers_503(monkeypatch):
    """A batch that inserts no order (cancels) leaves nothing to ask for: 503 as before, the
    client asks (a cancel again answers that the order is closed)."""
    market_create("ETH-USDT")
    [user] = _traders(1, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    [(_, [placed])] = sequencer.run_overlapped([place_command(user_id=user.pk, fields=_SELL)]) + sequencer.flush()
    pid = _batch_pid()
    monkeypatch.setattr(loop, "commit_sent", lambda: None)
    cancel = cancel_command(user_id=user.pk, order_id=placed["order"]["id"])
    assert sequencer.run_overlapped([cancel]) == []
    monkeypatch.undo()
    killer = threading.Thread(target=_terminate, args=(pid,))
    killer.start()
    killer.join(timeout=30)
    [(_, [answer])] = sequencer.flush()
    assert answer["status"] == 503
    assert Order.objects.get(pk=placed["order"]["id"]).status == "open"  # rolled back


def test_only_batches_of_the_threshold_and_more_are_left_on_their_way(settings):
    settings.ENGINE_OVERLAP_MIN_COMMANDS = 3
    market_create("ETH-USDT")
    [user] = _traders(1, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()

    def places(count: int) -> list[dict[str, Any]]:
        return [place_command(user_id=user.pk, fields=_SELL) for _ in range(count)]

    small, large, last = places(2), places(3), places(1)
    assert sequencer.run(small) == [(small, [ANY_201] * 2)]  # answered at once
    assert sequencer.run(large) == [] and sequencer.in_flight  # on its way
    assert sequencer.run(last) == [(large, [ANY_201] * 3), (last, [ANY_201])]  # landed first
    assert not sequencer.in_flight
    settings.ENGINE_OVERLAP_MIN_COMMANDS = 0  # never
    assert sequencer.run(large) == [(large, [ANY_201] * 3)]


class _Created:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and other.get("status") == 201

    def __repr__(self) -> str:
        return "<a 201 answer>"


ANY_201 = _Created()


def test_small_batches_sent_with_their_commit_answer_and_store_what_one_batch_at_a_time_does(settings):
    settings.ENGINE_OVERLAP_MIN_COMMANDS = BATCH + 1  # every batch below it: Sequencer.run lands it at once
    market_create("ETH-USDT", reference_price="2000.00")
    market_create("BTC-USDT", reference_price="2000.00")
    eth_traders, btc_traders = _traders(4, base="ETH"), _traders(4, base="BTC")

    landed, answers = _run(eth_traders, symbol="ETH-USDT", mode="landed")
    _, serial = _run(btc_traders, symbol="BTC-USDT", mode="serial")

    assert landed.ahead_applied == 0 and not landed.in_flight
    assert landed.batches == BATCHES
    assert answers == serial
    assert _balances(eth_traders, base="ETH") == _balances(btc_traders, base="BTC")
    _memory_is_the_database(landed)


def test_a_small_batchs_commit_is_queued_behind_its_writes_in_one_pipeline(settings):
    settings.ENGINE_OVERLAP_MIN_COMMANDS = 50
    market_create("ETH-USDT")
    users = _traders(2, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    sent: list[tuple[str, bool]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        pipelined = connections["default"].connection.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF
        sent.append((sql.split()[0].upper(), pipelined))
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(record):
        [(_, [sell])] = sequencer.run([place_command(user_id=users[0].pk, fields=_SELL)])
        [(_, [buy])] = sequencer.run([place_command(user_id=users[1].pk, fields=_BUY)])
    assert (sell["status"], buy["status"], buy["order"]["status"]) == (201, 201, "filled")
    commits = [index for index, (statement, _) in enumerate(sent) if statement == "COMMIT"]
    assert len(commits) == 2  # one per batch, each sent as a statement ...
    assert all(sent[index][1] for index in commits)  # ... in the pipeline of the batch's writes
    for start, commit in zip([0, commits[0] + 1], commits, strict=True):
        batch = sent[start:commit]
        assert ("INSERT", True) in batch and batch[-1][1]  # behind the batch's writes, pipelined
    assert_invariants()


def test_a_small_batch_the_server_refuses_at_commit_is_run_again(monkeypatch, settings):
    settings.ENGINE_OVERLAP_MIN_COMMANDS = 50
    market_create("ETH-USDT")
    users = _traders(2, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    [(_, [sell])] = sequencer.run([place_command(user_id=users[0].pk, fields=_SELL)])
    # Refused at COMMIT (a deferred foreign key broken): nothing of the batch committed.
    injected = _fault_before_commit(
        monkeypatch, "INSERT INTO orders_orderevent (order_id, status, reason, at) VALUES (-1, 'open', NULL, now())"
    )
    [(_, [buy])] = sequencer.run([place_command(user_id=users[1].pk, fields=_BUY)])
    assert injected
    assert (sell["status"], buy["status"], buy["order"]["status"]) == (201, 201, "filled")
    assert sequencer.taken_back == 1  # taken back in memory, then run as any batch
    _memory_is_the_database(sequencer)


@pytest.mark.parametrize("size", [1, 3])  # landed at once, and overlapped (threshold 3)
def test_a_batch_meeting_the_database_down_answers_503_and_the_next_one_serves(monkeypatch, settings, size):
    """The batch's connection terminated and no new one to be had (the server shutting
    down): the batch's rollback cannot be sent either. Answered 503, nothing raised out of
    the sequencer (the engine process goes on); once the database is back, it serves."""
    settings.ENGINE_OVERLAP_MIN_COMMANDS = 3
    market_create("ETH-USDT")
    users = _traders(2, base="ETH")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    killer = threading.Thread(target=_terminate, args=(pid,))
    killer.start()
    killer.join(timeout=30)

    def refused(params: Any) -> Any:
        raise psycopg.OperationalError("the database system is shutting down")

    monkeypatch.setattr(connection, "get_new_connection", refused)
    commands = [place_command(user_id=users[0].pk, fields=_SELL) for _ in range(size)]
    finished = [*sequencer.run(commands), *sequencer.flush()]
    assert [answer["status"] for _, answers in finished for answer in answers] == [503] * size
    monkeypatch.undo()
    connection.close()  # as the engine process does before its next batch after an error
    settings.ENGINE_OVERLAP_MIN_COMMANDS = 3
    finished = [*sequencer.run([place_command(user_id=users[1].pk, fields=_BUY)]), *sequencer.flush()]
    assert [answer["status"] for _, answers in finished for answer in answers] == [201]
    _memory_is_the_database(sequencer)


def _password_change(user: Any) -> None:
    try:
        user.set_password("another-password-2026")
        user.save()
    finally:
        connections.close_all()


def test_a_password_changed_while_a_batch_commits_refuses_the_batch_applied_ahead():
    """The batch applied ahead assumes the password mark the sequencer last read; its own
    reads find the new one, so it is applied again and the old token's order is refused."""
    market_create("ETH-USDT")
    alice, bob = UserFactory(), UserFactory()
    fund(alice, "USDT", "5000")
    fund(bob, "ETH", "5")
    old = password_mark(alice)
    buy = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.0100", "price": "2000.00"}
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()

    def place(mark: str) -> dict[str, Any]:
        return place_command(user_id=alice.pk, fields=buy, check_user=True, credentials_mark=mark)

    assert sequencer.run_overlapped([place(old)]) == []  # alice's mark now known
    sell = {"market": "ETH-USDT", "side": "sell", "type": "limit", "quantity": "0.0100", "price": "2100.00"}
    [(_, [first])] = sequencer.run_overlapped([place_command(user_id=bob.pk, fields=sell)])
    assert first["status"] == 201

    changer = threading.Thread(target=_password_change, args=(alice,))
    changer.start()
    changer.join(timeout=30)

    [(_, [placed_sell])] = sequencer.run_overlapped([place(old)])
    assert placed_sell["status"] == 201
    [(_, [refused])] = sequencer.flush()
    assert sequencer.ahead_applied == 1 and sequencer.ahead_again == 1
    assert refused["status"] == 401, refused
    assert Order.objects.filter(user=alice).count() == 1
    assert_invariants()
