"""Taking a batch back in memory (orders.engine.undo): for random histories and random
batches of placements (limit, market, stops that cascade, self-trade prevention, the house
fill), cancels and reference-price changes on the engine's MarketEngine, the rollback
leaves the book, the stops, the live orders, every order's columns and the market exactly
as they were before the batch: the same objects, in the same places."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.engine import HouseInventory, MarketRules, OrderType
from orders.engine.book import LiveOrder
from orders.engine.types import SelfTradePrevention, Side, TimeInForce
from orders.engine.undo import Undo
from orders.errors import InsufficientFunds
from tests.orders.engine.exchange import NOW, EngineExchange

D = Decimal
HOUSE = HouseInventory(base_available=D(50), quote_available=D(5000), max_notional=D(500), slippage_percent=D(1))

# Prices a few levels either side of 100 (buys below, sells above, some crossing): deep
# levels of several orders, which takers walk and fill from the front.
limit = st.tuples(
    st.just("limit"),
    st.integers(1, 4),
    st.sampled_from(list(Side)),
    st.integers(1, 6),
    st.integers(-4, 2),
    st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]),
    st.sampled_from(list(SelfTradePrevention)),
)
command = st.one_of(
    limit,
    limit,
    limit,
    st.tuples(st.just("market"), st.integers(1, 4), st.sampled_from(list(Side)), st.integers(1, 8)),
    st.tuples(
        st.just("stop"),
        st.integers(1, 4),
        st.sampled_from(list(Side)),
        st.integers(1, 4),
        st.integers(92, 108),
        st.sampled_from([OrderType.STOP_LOSS, OrderType.TAKE_PROFIT]),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("reference"), st.integers(95, 105)),
)


def _apply(exchange: EngineExchange, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "limit":
        _, owner, side, quantity, offset, tif, stp = step
        price = D(100 - offset) if side is Side.BUY else D(100 + offset)
        exchange.place(
            exchange.new_order(
                owner=owner, side=side, kind=OrderType.LIMIT, quantity=D(quantity), price=price, tif=tif, stp=stp
            )
        )
    elif kind == "market":
        _, owner, side, quantity = step
        exchange.place(
            exchange.new_order(owner=owner, side=side, kind=OrderType.MARKET, quantity=D(quantity), tif=TimeInForce.IOC)
        )
    elif kind == "stop":
        _, owner, side, quantity, stop_price, stop_type = step
        exchange.place(
            exchange.new_order(
                owner=owner,
                side=side,
                kind=stop_type,
                quantity=D(quantity),
                stop_price=D(stop_price),
                tif=TimeInForce.IOC,
            )
        )
    elif kind == "cancel":
        live = [order for order in exchange.orders if order.is_live]
        if live:
            exchange.cancel(live[step[1] % len(live)])
    else:
        exchange.engine.set_reference_price(D(step[1]), journal=exchange.journal)


def _memory(exchange: EngineExchange) -> dict[str, Any]:
    """Everything the engine holds, objects by identity, orders with every column."""
    engine = exchange.engine

    def columns(order: LiveOrder) -> tuple[Any, ...]:
        return (id(order), *(getattr(order, name) for name in LiveOrder.__slots__ if name != "pending_events"),
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
        _apply(exchange, step)
    undo.clear()
    before = _memory(exchange)
    known = len(exchange.orders)

    for step in batch:
        _apply(exchange, step)
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
