"""The shard's lock on PostgreSQL (orders.sequencer.leadership): an engine whose session of
the lock ended commits nothing more once another may lead (the leader check each batch
begins with), a new leader waits for the batch the engine before it began under the
lock, and a leader gone silent is taken over. Real sessions and commits; the processes'
version is tests/reliability/test_engine_faults.py."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection

from orders.models import Order
from orders.sequencer import commands as c
from orders.sequencer import leadership as leadership_module
from orders.sequencer.leadership import LeaderFence, Leadership
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund, market_create
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def leaderships() -> Iterator[list[Leadership]]:
    made: list[Leadership] = []
    yield made
    for leadership in made:
        leadership.release()


def _other_session() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


@contextlib.contextmanager
def _batch_begun(fence: LeaderFence) -> Iterator[psycopg.Connection]:
    """A batch of the leading engine on a session of its own: past its leader check, not
    committed."""
    with _other_session() as batch:
        batch.execute("BEGIN")
        batch.execute(fence.SQL, fence.params)
        yield batch


def _session_end(leadership: Leadership) -> None:
    """As a network cut or an operator would: the lock's session ends, its engine runs on."""
    assert leadership._pg is not None
    with _other_session() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [leadership._pg.info.backend_pid])


def _bid(user_id: int, price: str) -> c.Command:
    fields = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": price, "quantity": "0.1"}
    return c.place_command(user_id=user_id, fields=fields)


def test_an_engine_whose_lock_session_ended_commits_nothing_once_another_leads(leaderships):
    market_create("ETH-USDT")
    user = UserFactory()
    fund(user, "USDT", "10000")
    active, standby = Leadership("fenced"), Leadership("fenced")
    leaderships += [active, standby]
    assert active.acquire() and not standby.acquire()
    sequencer = Sequencer()
    sequencer.fence = active.fence()
    ((_, (placed,)),) = sequencer.run([_bid(user.pk, "1000.00")])
    assert placed["status"] == 201  # the check passes while the session holds the lock

    _session_end(active)
    wait_until(standby.acquire, what="the standby to lead", timeout=10)  # the engine before it has not noticed
    ((_, (refused,)),) = sequencer.run([_bid(user.pk, "1001.00")])
    answers = sequencer.run_batch([_bid(user.pk, "1002.00")])

    assert refused["status"] == 503 and refused["error"]["code"] == "service_unavailable"
    assert [answer["status"] for answer in answers] == [503]
    assert list(Order.objects.values_list("id", flat=True)) == [int(placed["order"]["id"])]
    assert not active.held()


def test_a_new_leader_waits_for_the_batch_the_engine_before_it_began(leaderships):
    active, standby = Leadership("drained"), Leadership("drained")
    leaderships += [active, standby]
    assert active.acquire()
    fence = active.fence()
    assert fence is not None
    acquired: list[bool] = []
    with _batch_begun(fence) as batch:
        _session_end(active)
        taking = threading.Thread(
            target=lambda: acquired.append(wait_until(standby.acquire, what="the lock released", timeout=10))
        )
        taking.start()
        wait_until(lambda: _waiting_for_advisory_lock(), what="the standby waiting for the batch", timeout=10)
        assert not acquired, "the standby led while a batch of the engine before it was open"
        batch.execute("COMMIT")
        taking.join(timeout=10)
    assert acquired == [True]


def _waiting_for_advisory_lock() -> bool:
    with _other_session() as other:
        row = other.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    return bool(row and row[0])


def test_a_leader_that_keeps_checking_is_not_taken_over_and_a_silent_one_is(leaderships, settings):
    """A standby that cannot take the lock ends the leader's sessions once its lock session
    has been idle past ENGINE_LEADER_SILENT_SECONDS (a frozen or hung leader), its open
    batch included, and then leads; a leader whose loop comes round (`held`) keeps the lock."""
    settings.ENGINE_LEADER_SILENT_SECONDS = 1.0
    active, standby = Leadership("silent"), Leadership("silent")
    leaderships += [active, standby]
    assert active.acquire()
    fence = active.fence()
    assert fence is not None
    checked_until = time.monotonic() + 3.5
    while time.monotonic() < checked_until:  # three and a half times the limit, a loop checking
        assert active.held()
        last_checked = time.monotonic()
        assert not standby.acquire(), "a leader that keeps checking was taken over"
        time.sleep(0.1)  # the leading loop's pace
    with _batch_begun(fence) as batch:
        wait_until(standby.acquire, what="the standby to take over from the silent leader", timeout=10)
        silent_for = time.monotonic() - last_checked
        with pytest.raises(psycopg.OperationalError):  # its batch was rolled back with its session
            batch.execute("COMMIT")
    # Not before the leader had been silent for the limit (less the few ms between the
    # server's note of its last statement and this process's).
    assert silent_for >= 0.95, silent_for
    assert not active.held(), "the silent leader's session still holds the lock"


def test_a_new_leader_ends_a_batch_the_engine_before_it_left_open(leaderships, settings):
    """The engine before it lost its lock's session, then froze in the middle of a batch:
    the new leader waits ENGINE_LEADER_SILENT_SECONDS for that batch, then ends it (rolled
    back: nothing of it committed) and leads."""
    settings.ENGINE_LEADER_SILENT_SECONDS = 1.0
    active, standby = Leadership("frozen-batch"), Leadership("frozen-batch")
    leaderships += [active, standby]
    assert active.acquire()
    fence = active.fence()
    assert fence is not None
    with _batch_begun(fence) as batch:  # never to commit
        _session_end(active)
        began = time.monotonic()
        assert wait_until(standby.acquire, what="the standby to lead", timeout=10)
        waited = time.monotonic() - began
        with pytest.raises(psycopg.OperationalError):  # ended: its transaction rolled back
            batch.execute("COMMIT")
    # It waited for the batch the whole limit (its lock_timeout) before ending it.
    assert waited >= 1.0, waited
    assert standby.held()


@pytest.fixture
def neighbour_session() -> Iterator[psycopg.Connection]:
    """A session in another database of the same server (another platform, staging beside
    production)."""
    name = f"{connection.settings_dict['NAME']}_neighbour"[:63]
    with _other_session() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params["dbname"] = name
        try:
            with psycopg.connect(**params, autocommit=True) as session:
                yield session
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_standby_leaves_alone_a_silent_leader_of_another_database(leaderships, settings, neighbour_session):
    """Advisory locks are per database: another platform's engine of the same shard on the
    same server holds the same key in its own database. Silent past the limit, it is not
    this standby's to end (it was: a test's standby ended another test's leader)."""
    settings.ENGINE_LEADER_SILENT_SECONDS = 0.5
    active, standby = Leadership("neighbour"), Leadership("neighbour")
    leaderships += [active, standby]
    assert active.acquire()
    key = Leadership("neighbour").key
    row = neighbour_session.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
    assert row and row[0]  # the same key, free in its own database
    checked_until = time.monotonic() + 2.5  # five times the limit, the neighbour silent all along
    while time.monotonic() < checked_until:
        assert active.held()
        assert not standby.acquire()
        time.sleep(0.1)
    assert neighbour_session.execute("SELECT 1").fetchone() == (1,), "the other database's leader was ended"


@pytest.mark.parametrize("step", ["+5 seconds", "-5 seconds"])
def test_a_database_clock_step_neither_ends_a_healthy_leader_nor_hides_a_silent_one(
    leaderships, settings, monkeypatch, step
):
    """The server's clock stepped (NTP, its VM resumed): as the standby reads it, each
    session's last statement is 5 s older (forward) or younger (back) than it is. A forward
    step made a leader whose loop keeps checking look silent past the limit at the first
    look, and the standby ended it; a step back hid a frozen leader for as long."""
    settings.ENGINE_LEADER_SILENT_SECONDS = 1.0
    stepped = leadership_module._HOLDERS_SQL.replace("clock_timestamp()", f"(clock_timestamp() + interval '{step}')")
    assert stepped != leadership_module._HOLDERS_SQL
    monkeypatch.setattr(leadership_module, "_HOLDERS_SQL", stepped)
    active, standby = Leadership(f"stepped{step[0]}"), Leadership(f"stepped{step[0]}")
    leaderships += [active, standby]
    assert active.acquire()
    checked_until = time.monotonic() + 3.5
    while time.monotonic() < checked_until:
        assert active.held(), "the healthy leader's session was ended"
        last_checked = time.monotonic()
        assert not standby.acquire(), "a leader that keeps checking was taken over"
        time.sleep(0.1)
    wait_until(standby.acquire, what="the standby to take over from the silent leader", timeout=10)
    silent_for = time.monotonic() - last_checked
    assert 0.95 <= silent_for < 5, silent_for
    assert not active.held()
