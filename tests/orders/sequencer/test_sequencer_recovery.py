"""orders.sequencer.recovery: a book loaded from the database (engine start, takeover, after
a failed batch) holds exactly what the engine that wrote it held: every field of every live
order, the same book order and the same pending stops. On PostgreSQL the loader reads with
a binary server-side cursor of its own; on SQLite through the ORM."""

from __future__ import annotations

import gc
from dataclasses import fields
from typing import Any

import pytest

from orders.engine.book import LiveOrder
from orders.engine.types import Side
from orders.sequencer.loop import Sequencer
from orders.sequencer.recovery import GC_YOUNG_THRESHOLD, heap_settle, market_engine_load, trading_rules
from orders.sequencer.transport import _in_process

pytestmark = pytest.mark.django_db

# What the database does not hold: the placing request's correlation id (logs only), the
# events not yet written (none once a batch committed) and `seq`, the age order (an order
# placed since start sorts above every loaded one; loaded, its id: the same order).
_MEMORY_ONLY = {"correlation_id", "pending_events", "seq"}


def _snapshot(order: LiveOrder) -> dict[str, Any]:
    return {f.name: getattr(order, f.name) for f in fields(order) if f.name not in _MEMORY_ONLY}


def test_a_loaded_book_is_the_book_that_was_written(market, trader):
    alice, bob = trader(USDT="100000", ETH="5"), trader(USDT="100000", ETH="5")
    for index in range(6):
        alice.order(side="buy", type="limit", quantity="0.3", price=f"{1950 + index}.00", client_order_id=f"b{index}")
        bob.order(side="sell", type="limit", quantity="0.2", price=f"{2050 + index}.00")
    bob.order(side="sell", type="limit", quantity="0.1", price="1955.00")  # partially fills alice's best bid
    alice.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1800.00")
    bob.order(side="buy", type="take_profit", quantity="0.1", stop_price="1700.00", time_in_force="FOK")
    sequencer = _in_process._sequencer
    assert isinstance(sequencer, Sequencer)
    (written,) = sequencer.markets

    loaded = market_engine_load(market=market, rules=trading_rules())

    assert set(loaded.live) == set(written.live) and len(loaded.live) == 14
    for order_id, order in written.live.items():
        assert _snapshot(loaded.live[order_id]) == _snapshot(order), order_id
    assert any(o.status == "partially_filled" for o in loaded.live.values())
    for side in Side:
        assert [o.id for o in loaded.book.makers(taker_side=side.opposite)] == [
            o.id for o in written.book.makers(taker_side=side.opposite)
        ]
    assert loaded.book.levels(Side.BUY) == written.book.levels(Side.BUY)
    assert len(loaded.stops) == len(written.stops) == 2
    assert [o.id for o in loaded.stops.take_reached(written.spec.last_price or market.reference_price)] == []
    assert sorted(o.id for o in loaded.stops.take_reached(written.spec.reference_price / 2)) == sorted(
        o.id for o in written.stops.take_reached(written.spec.reference_price / 2)
    )


def test_a_fresh_sequencer_trades_against_the_loaded_book(market, trader):
    alice, bob = trader(USDT="10000"), trader(ETH="1")
    resting = alice.order(side="buy", type="limit", quantity="0.5", price="1990.00").json()
    _in_process.reset()  # a new engine: it loads the book from the database
    taken = bob.order(side="sell", type="market", quantity="0.2").json()
    assert taken["status"] == "filled" and taken["fills"][0]["price"] == "1990.00000000"
    assert alice.api.get(f"/api/orders/{resting['id']}").json()["status"] == "partially_filled"


def test_heap_settle_moves_the_loaded_book_out_of_the_collectors_reach(market, trader):
    """Full collections no longer walk the resting orders (the engine process, once loaded)."""
    trader(USDT="10000").order(side="buy", type="limit", quantity="0.5", price="1990.00")
    sequencer = Sequencer(symbols={"ETH-USDT"})
    sequencer.load()
    (resting,) = list(sequencer.markets[0].book.makers(taker_side=Side.SELL))
    assert gc.is_tracked(resting)
    assert any(obj is resting for obj in gc.get_objects())
    threshold = gc.get_threshold()
    try:
        heap_settle()
        assert gc.get_freeze_count() > 0
        assert not any(obj is resting for obj in gc.get_objects())  # every generation but the frozen one
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()  # this is a test run's heap, not an engine's
        gc.set_threshold(*threshold)
    assert any(obj is resting for obj in gc.get_objects(generation=2))
