"""What the sequencer knows of the rows its batches read (orders.sequencer.known, the values
a batch applied ahead assumes) is bounded: kept for good, it grew with every account that
ever traded for as long as the engine ran (wallets, users found active, TTX holdings), about
400 bytes a wallet. The oldest half goes past KNOWN_REMEMBERED; the traders of the latest
batches stay known, and what is forgotten is read again by the next batch that names it."""

from __future__ import annotations

from typing import Any

import pytest

from orders.sequencer import known
from orders.sequencer.commands import place_command
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund
from tests.orders.invariants import assert_invariants

pytestmark = pytest.mark.django_db

BOUND = 10


def _bid(user: Any) -> dict[str, Any]:
    fields = {"market": "ETH-USDT", "type": "limit", "side": "buy", "quantity": "0.1", "price": "1000.00"}
    return place_command(user_id=user.pk, fields=fields, check_user=True)


def test_what_the_batches_read_is_forgotten_past_the_bound(market, monkeypatch):
    monkeypatch.setattr(known, "KNOWN_REMEMBERED", BOUND)
    traders = [UserFactory() for _ in range(3 * BOUND)]
    for trader in traders:
        fund(trader, "USDT", "5000")
    sequencer = Sequencer()
    sequencer.load()
    for trader in traders:  # one batch each: a new account's wallet, activity and holdings
        assert [a["status"] for a in sequencer.run_batch([_bid(trader)])] == [201]
    remembered = sequencer._known
    assert len(remembered.wallets) <= BOUND and len(remembered.active) <= BOUND
    assert len(remembered.holdings) <= BOUND
    last = traders[-1].pk
    assert last in remembered.active and any(key[0] == last for key in remembered.wallets)
    # A forgotten trader's next order goes through (its rows read again) and is known again.
    first = traders[0]
    assert first.pk not in remembered.active
    assert [a["status"] for a in sequencer.run_batch([_bid(first)])] == [201]
    assert first.pk in remembered.active
    assert_invariants()
