"""Taking a batch back in memory (orders.engine.undo): for random histories and random
batches of placements (limit, market, stops that cascade, self-trade prevention, the house
fill), cancels and reference-price changes on the engine's MarketEngine, the rollback
leaves the book, the stops, the live orders, every order's columns and the market exactly
as they were before the batch: the same objects, in the same places."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.engine import HouseInventory, MarketRules, OrderType
from orders.engine.book import LiveOrder
from orders.engine.types import Side, TimeInForce
from orders.engine.undo import Undo
from orders.errors import InsufficientFunds
from tests.orders.engine.exchange import NOW, EngineExchange
from tests.orders.engine.steps import (
    cancel_steps,
    limit_steps,
    market_steps,
    reference_steps,
    step_apply,
    stop_steps,
)

D = Decimal
HOUSE = HouseInventory(base_available=D(50), quote_available=D(5000), max_notional=D(500), slippage_percent=D(1))

# Prices a few levels either side of 100, some crossing: deep levels of several orders,
# which takers walk and fill from the front.
limit = limit_steps(
    prices=(96, 104), time_in_force=[TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK], stp=True
)
command = st.one_of(
    limit,
    limit,
    limit,
    market_steps(),
    stop_steps(stop_prices=(92, 108)),
    cancel_steps(among=60),
    reference_steps(prices=(95, 105)),
)


def _memory(exchange: EngineExchange) -> dict[str, Any]:
    """Everything the engine holds, objects by identity, orders with every column."""
    engine = exchange.engine

    def columns(order: LiveOrder) -> tuple[Any, ...]:
        return (id(order), *(getattr(order, f.name) for f in fields(LiveOrder) if f.name != "pending_events"),
                list(order.pending_events))  # fmt: skip

    return {
        "bids": [(id(order), order.price) for order in engine.book.makers(taker_side=Side.SELL)],
        "asks": [(id(order), order.price) for order in engine.book.makers(taker_side=Side.BUY)],
        "book_size": len(engine.book),
        "levels": (engine.book.levels(Side.BUY), engine.book.levels(Side.SELL)),
        "stops": [id(order) for order in engine.stops.orders()],
        "live": {order_id: id(order) for order_id, order in engine.live.items()},
        "orders": [columns(order) for order in exchange.orders],
        "market": (engine.spec.last_price, engine.spec.reference_price),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=st.lists(command, min_size=20, max_size=60),
    batch=st.lists(command, min_size=5, max_size=25),
    house=st.booleans(),
)
def test_a_batch_taken_back_leaves_memory_as_it_was(history, batch, house):
    rules = MarketRules(
        reference_price=D(100),
        max_slippage_bps=1500,
        price_tick=D(1),
        quantity_step=D(1),
        house=HOUSE if house else None,
    )
    exchange = EngineExchange.create(rules=rules, owners=[1, 2, 3, 4], base=D(150), quote=D(40_000), ttx={})
    undo = Undo()
    exchange.engine.attach(undo)
    for step in history:  # committed batches: never taken back
        step_apply(exchange, step)
    undo.clear()
    before = _memory(exchange)
    known = len(exchange.orders)

    for step in batch:
        step_apply(exchange, step)
    undo.rollback()
    del exchange.orders[known:]  # the batch's own orders go with it

    assert _memory(exchange) == before
    assert len(undo) == 0


def test_a_failure_half_way_through_a_command_is_taken_back_too():
    """A command interrupted after its first changes (the wallets raising while a fill is
    settled) is taken back with the rest of the batch."""
    rules = MarketRules(reference_price=D(100), max_slippage_bps=1500, price_tick=D(1), quantity_step=D(1), house=None)
    exchange = EngineExchange.create(rules=rules, owners=[1, 2], base=D(100), quote=D(10_000), ttx={})
    undo = Undo()
    exchange.engine.attach(undo)
    for price in (101, 102):
        exchange.place(exchange.new_order(owner=1, side=Side.SELL, kind=OrderType.LIMIT, quantity=D(2), price=D(price)))
    exchange.place(
        exchange.new_order(
            owner=1, side=Side.SELL, kind=OrderType.STOP_LOSS, quantity=D(1), stop_price=D(101), tif=TimeInForce.IOC
        )
    )
    undo.clear()
    before = _memory(exchange)

    posted = 0
    original_post = exchange.wallets.post

    def post_then_fail(postings: Any) -> None:
        nonlocal posted
        posted += 1
        if posted == 2:  # the second fill's postings: the first maker is already filled
            raise InsufficientFunds()
        original_post(postings)

    exchange.wallets.post = post_then_fail  # type: ignore[method-assign]
    taker = exchange.new_order(owner=2, side=Side.BUY, kind=OrderType.LIMIT, quantity=D(3), price=D(102))
    try:
        exchange.engine.place(
            taker, journal=exchange.journal, wallets=exchange.wallets, discount=exchange.discounts, now=NOW
        )
    except InsufficientFunds:
        pass
    else:
        raise AssertionError("the second fill's postings were refused")
    assert _memory(exchange) != before  # half-way: the first maker was filled
    undo.rollback()
    assert _memory(exchange) == before
