"""The sequencer's batch statements are prepared on its PostgreSQL connection
(ENGINE_PREPARED_STATEMENTS, orders.sequencer.arrays.statements_pipelined): once seen, each
one is executed by name; statements sent outside a batch's pipeline are never prepared, and
with the setting off nothing is."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from orders.models import Order, Trade
from orders.sequencer.commands import cancel_command, place_command
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund
from tests.orders.invariants import assert_invariants

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _place(user: Any, **fields: str) -> dict[str, Any]:
    return place_command(user_id=user.pk, fields={"market": "ETH-USDT", "type": "limit", **fields}, check_user=True)


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def _trading(rounds: int) -> None:
    """Rounds of a resting sell, a crossing buy and a cancelled bid: every statement of
    a batch (reads, locks, ids, inserts, updates, a cancel's stored history) more than once."""
    maker, taker = UserFactory(), UserFactory()
    fund(maker, "ETH", "10")
    fund(taker, "USDT", "100000")
    sequencer = Sequencer()
    sequencer.load()
    for _ in range(rounds):
        answers = sequencer.run_batch(
            [
                _place(maker, side="sell", quantity="0.5", price="2000.00"),
                _place(taker, side="buy", quantity="0.5", price="2000.00"),
                _place(taker, side="buy", quantity="0.1", price="1000.00"),
            ]
        )
        assert [answer["status"] for answer in answers] == [201, 201, 201], answers
        resting = int(answers[2]["order"]["id"])
        cancelled = sequencer.run_batch([cancel_command(user_id=taker.pk, order_id=resting, check_user=True)])
        assert cancelled[0]["status"] == 200 and cancelled[0]["order"]["status"] == "cancelled", cancelled
    assert Trade.objects.count() == rounds
    assert Order.objects.filter(status="cancelled").count() == rounds
    assert_invariants()


def test_the_batch_statements_are_prepared_once_seen(market):
    before = set(_prepared())
    _trading(rounds=3)
    prepared = [statement for statement in _prepared() if statement not in before]
    order_table, trade_table = Order._meta.db_table, Trade._meta.db_table
    assert any(s.startswith(f'INSERT INTO "{order_table}"') for s in prepared), prepared
    assert any(s.startswith(f'INSERT INTO "{trade_table}"') for s in prepared), prepared
    assert any(s.startswith(f'UPDATE "{order_table}"') for s in prepared), prepared
    assert any("FOR UPDATE" in s for s in prepared), prepared  # the wallets' lock
    # Prepared once each, executed by name afterwards: no statement text twice.
    assert len(prepared) == len(set(prepared))
    # Only inside a batch's pipeline: the connection's threshold is Django's again after it.
    assert connection.connection.prepare_threshold is None
    # COMMIT and BEGIN are sent as they are, never prepared.
    assert not [s for s in prepared if s.strip().upper() in {"COMMIT", "BEGIN"}]


@override_settings(ENGINE_PREPARED_STATEMENTS=False)
def test_nothing_is_prepared_when_turned_off(market):
    before = set(_prepared())
    _trading(rounds=3)
    assert set(_prepared()) == before


@pytest.mark.django_db(transaction=True)
@override_settings(ENGINE_OVERLAP_MIN_COMMANDS=2)
def test_overlapped_batches_prepare_their_statements_but_not_commit(market):
    """Sequencer.run with batches sent ahead of their COMMIT (run_overlapped): the COMMIT
    queued behind the writes is sent as it is, every batch answered and the ledger exact."""
    maker, taker = UserFactory(), UserFactory()
    fund(maker, "ETH", "10")
    fund(taker, "USDT", "100000")
    sequencer = Sequencer()
    sequencer.load()
    before = set(_prepared())
    answered: list[dict[str, Any]] = []
    for _ in range(4):
        batch = [
            _place(maker, side="sell", quantity="0.5", price="2000.00"),
            _place(taker, side="buy", quantity="0.5", price="2000.00"),
        ]
        answered += [answer for _, answers in sequencer.run(batch) for answer in answers]
    answered += [answer for _, answers in sequencer.flush() for answer in answers]
    assert [answer["status"] for answer in answered] == [201] * 8, answered
    assert sequencer.ahead_applied == 3
    prepared = [statement for statement in _prepared() if statement not in before]
    assert any(s.startswith(f'INSERT INTO "{Trade._meta.db_table}"') for s in prepared), prepared
    assert not [s for s in prepared if s.strip().upper() in {"COMMIT", "BEGIN"}], prepared
    assert Trade.objects.count() == 4
    assert_invariants()
