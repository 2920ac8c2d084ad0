"""A batch locks its takers' wallets and those of the makers it will likely meet in its
first statement, in id order; a wallet met only after matching (a guess missed: a maker an
earlier command of the batch uncovered, a stop's owner) does not wait for another
transaction: the batch is refused at once and retried with every wallet it met locked in its
first statement. Two engines whose makers cross therefore do not deadlock (before: each held
its takers' wallets and waited for the other's makers', until PostgreSQL's deadlock_timeout
of 1 s ended one of them)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import DatabaseError, connections, transaction

from orders.locks import lock_wallets_by_key
from orders.models import Asset, Order, Trade
from orders.sequencer import loop as sequencer_loop
from orders.sequencer.commands import place_command
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund, market_create
from tests.orders.invariants import assert_invariants
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _place(user: Any, symbol: str, **fields: str) -> dict[str, Any]:
    return place_command(user_id=user.pk, fields={"market": symbol, "type": "limit", **fields})


@pytest.fixture
def refusals(monkeypatch) -> list[str | None]:
    """The SQLSTATE of every batch attempt the database refused, in order."""
    seen: list[str | None] = []
    real = Sequencer._batch

    def batch(self: Sequencer, commands: list[Any], **kwargs: Any) -> Any:
        try:
            return real(self, commands, **kwargs)
        except DatabaseError as exc:
            seen.append(getattr(exc.__cause__, "sqlstate", None))
            raise

    monkeypatch.setattr(Sequencer, "_batch", batch)
    return seen


@pytest.fixture
def unguessed(monkeypatch) -> None:
    """No maker guessed: every maker's wallet is met after matching."""
    monkeypatch.setattr(sequencer_loop._MakersAhead, "add", lambda self, engine, command: None)


@pytest.fixture
def asked(monkeypatch) -> list[set[Any]]:
    """The wallets each batch attempt locked in its first statement."""
    seen: list[set[Any]] = []
    reads = sequencer_loop.batch_reads

    def batch_reads(*, wanted: Any) -> Any:
        seen.append(set(wanted.wallet_keys))
        return reads(wanted=wanted)

    monkeypatch.setattr(sequencer_loop, "batch_reads", batch_reads)
    return seen


def _in_thread(target: Any) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(target())
        except BaseException as exc:  # asserted by the test
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's session

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results, errors


def _held(key: Any, *, until: threading.Event) -> tuple[threading.Thread, list[BaseException]]:
    """Another transaction holding the wallet of `key` locked until `until` is set."""
    held = threading.Event()

    def hold() -> None:
        with transaction.atomic():
            lock_wallets_by_key(keys=[key])
            held.set()
            until.wait(timeout=30)

    holder, _, errors = _in_thread(hold)
    assert held.wait(timeout=30)
    return holder, errors


def test_engines_whose_makers_cross_do_not_deadlock(monkeypatch, refusals, unguessed):
    eth, btc = market_create("ETH-USDT"), market_create("BTC-USDT", reference_price="30000.00")
    x, y = UserFactory(), UserFactory()  # each a maker in one market and the taker in the other
    for user in (x, y):
        fund(user, "USDT", "100000")
    fund(x, "ETH", "1")
    fund(y, "BTC", "1")
    eth_engine, btc_engine = Sequencer(symbols={eth.symbol}), Sequencer(symbols={btc.symbol})
    for engine in (eth_engine, btc_engine):
        engine.load()
    [resting] = eth_engine.run_batch([_place(x, "ETH-USDT", side="sell", quantity="0.1", price="2000.00")])
    [resting_btc] = btc_engine.run_batch([_place(y, "BTC-USDT", side="sell", quantity="0.01", price="30000.00")])
    assert resting["status"] == resting_btc["status"] == 201

    # Both first attempts hold their takers' wallets before either matches: the ETH batch
    # then needs X's USDT (the BTC batch's taker), the BTC batch Y's (the ETH batch's taker).
    both_prepared = threading.Barrier(2)
    prepare = sequencer_loop._Batch.prepare
    waited: set[int] = set()

    def prepare_then_meet(self: Any, commands: list[Any]) -> None:
        prepare(self, commands)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            both_prepared.wait(timeout=30)

    monkeypatch.setattr(sequencer_loop._Batch, "prepare", prepare_then_meet)
    eth_thread, eth_answers, eth_errors = _in_thread(
        lambda: eth_engine.run_batch([_place(y, "ETH-USDT", side="buy", quantity="0.1", price="2000.00")])
    )
    btc_thread, btc_answers, btc_errors = _in_thread(
        lambda: btc_engine.run_batch([_place(x, "BTC-USDT", side="buy", quantity="0.01", price="30000.00")])
    )
    for thread in (eth_thread, btc_thread):
        thread.join(timeout=60)
    assert not eth_errors and not btc_errors, (eth_errors, btc_errors)

    assert "40P01" not in refusals  # no deadlock, so no deadlock_timeout waited
    assert refusals and set(refusals) == {"55P03"}  # they did meet: refused at once, then retried
    for [[answer]] in (eth_answers, btc_answers):
        assert answer["status"] == 201
        assert answer["order"]["status"] == "filled"
    assert Trade.objects.count() == 2  # once each
    assert set(Order.objects.values_list("status", flat=True)) == {"filled"}
    assert_invariants()


def test_a_held_wallet_met_after_matching_is_locked_first_by_the_retry(market, monkeypatch, refusals, unguessed, asked):
    maker, taker = UserFactory(), UserFactory()
    fund(maker, "ETH", "1")
    fund(taker, "USDT", "5000")
    engine = Sequencer()
    engine.load()
    [resting] = engine.run_batch([_place(maker, "ETH-USDT", side="sell", quantity="0.1", price="2000.00")])
    assert resting["status"] == 201
    proceeds = (maker.pk, Asset.objects.get(symbol="USDT").pk, 0)  # only receives: locked after matching
    refused = threading.Event()
    holder, holder_errors = _held(proceeds, until=refused)  # a deposit, say, until the batch was refused
    real = Sequencer._batch

    def batch(self: Sequencer, commands: list[Any], **kwargs: Any) -> Any:
        try:
            return real(self, commands, **kwargs)
        except DatabaseError:
            refused.set()  # the holder commits while the retry waits for it in its first statement
            raise

    monkeypatch.setattr(Sequencer, "_batch", batch)
    [answer] = engine.run_batch([_place(taker, "ETH-USDT", side="buy", quantity="0.1", price="2000.00")])
    holder.join(timeout=30)
    assert not holder_errors

    assert refusals == ["55P03"]  # refused at once, not after waiting for the holder
    assert proceeds not in asked[-2] and proceeds in asked[-1]  # the retry locked it first
    assert answer["status"] == 201 and answer["order"]["status"] == "filled"
    assert engine.taken_back == 1
    assert Trade.objects.count() == 1
    assert_invariants()


def _waiting_for_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(cursor.fetchone()[0])


def test_the_makers_a_batch_will_meet_are_locked_with_its_takers(market, refusals, asked):
    maker, other, taker = UserFactory(), UserFactory(), UserFactory()
    fund(maker, "ETH", "1")
    fund(other, "ETH", "1")
    fund(taker, "USDT", "5000")
    engine = Sequencer()
    engine.load()
    answers = engine.run_batch(
        [
            _place(maker, "ETH-USDT", side="sell", quantity="0.1", price="2000.00"),
            _place(other, "ETH-USDT", side="sell", quantity="0.1", price="2100.00"),  # beyond what is taken
        ]
    )
    assert [answer["status"] for answer in answers] == [201, 201]
    usdt, eth = Asset.objects.get(symbol="USDT").pk, Asset.objects.get(symbol="ETH").pk
    proceeds = (maker.pk, usdt, 0)
    release = threading.Event()
    holder, holder_errors = _held(proceeds, until=release)
    batch, results, errors = _in_thread(
        lambda: engine.run_batch([_place(taker, "ETH-USDT", side="buy", quantity="0.1", price="2000.00")])
    )
    # The batch waits for the maker's wallet in its first statement, with the takers'.
    wait_until(_waiting_for_a_lock, what="the batch to wait for the held wallet")
    release.set()
    for thread in (holder, batch):
        thread.join(timeout=30)
    assert not holder_errors and not errors, (holder_errors, errors)

    assert refusals == []  # not refused: nothing was left to lock after matching
    assert {proceeds, (maker.pk, eth, 0)} <= asked[-1]
    assert (other.pk, usdt, 0) not in asked[-1]  # the 0.1 taken is the first maker's
    [[answer]] = results
    assert answer["status"] == 201 and answer["order"]["status"] == "filled"
    assert Trade.objects.count() == 1

    # A limit that crosses nothing guesses nothing; the next one continues where it stops.
    answers = engine.run_batch(
        [
            _place(taker, "ETH-USDT", side="buy", quantity="0.1", price="2050.00"),  # rests below 2100
            _place(taker, "ETH-USDT", side="buy", quantity="0.05", price="2100.00"),  # takes from `other`
        ]
    )
    assert [answer["status"] for answer in answers] == [201, 201]
    assert (other.pk, usdt, 0) in asked[-1]
    resting_buyer = UserFactory()
    fund(resting_buyer, "USDT", "1000")
    [rests] = engine.run_batch([_place(resting_buyer, "ETH-USDT", side="buy", quantity="0.01", price="2000.00")])
    assert rests["status"] == 201 and rests["order"]["status"] == "open"
    assert (other.pk, usdt, 0) not in asked[-1]  # 2000 reaches no ask (2100)
    assert_invariants()


def test_the_orders_of_a_batch_guess_the_makers_one_after_the_other(market, refusals, asked):
    first, second, taker = UserFactory(), UserFactory(), UserFactory()
    for maker in (first, second):
        fund(maker, "ETH", "1")
    fund(taker, "USDT", "5000")
    engine = Sequencer()
    engine.load()
    engine.run_batch(
        [
            _place(first, "ETH-USDT", side="sell", quantity="0.1", price="2000.00"),
            _place(second, "ETH-USDT", side="sell", quantity="0.1", price="2001.00"),
        ]
    )
    usdt = Asset.objects.get(symbol="USDT").pk
    answers = engine.run_batch(
        [
            _place(taker, "ETH-USDT", side="buy", quantity="0.1", price="2001.00"),  # the first maker
            _place(taker, "ETH-USDT", side="buy", quantity="0.1", price="2001.00"),  # then the second
        ]
    )
    assert [answer["order"]["status"] for answer in answers] == ["filled", "filled"]
    assert {(first.pk, usdt, 0), (second.pk, usdt, 0)} <= asked[-1]
    assert refusals == []
    assert_invariants()
