"""orders.sequencer.standby: a warm standby's books, loaded while another engine leads and
caught up from the shard's events and trades, are the books a fresh load from the database
builds: the same live orders with every field, the same queue order in each price level,
the same pending stops, the same market row. Random traffic (fills, partial fills, cancels,
cancel-all, stops firing, reference-price and staff changes of the market), with the
standby's marks, load and catch-ups at random points between the active engine's batches,
the load itself possibly a few batches after the marks."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal as D
from typing import Any

import pytest
from django.db import OperationalError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.engine.market import MarketEngine
from orders.engine.types import Side
from orders.models import Market
from orders.sequencer import commands as c
from orders.sequencer import standby as standby_module
from orders.sequencer.loop import Sequencer
from orders.sequencer.standby import WarmStandby
from tests.factories import UserFactory, fund, market_create

pytestmark = pytest.mark.django_db
_symbols = itertools.count(1)
_DB_ONLY = {"correlation_id", "pending_events"}  # memory only (the loader never sets them)


def _state(engine: MarketEngine) -> dict[str, Any]:
    live = {
        order_id: {f.name: getattr(order, f.name) for f in dataclasses.fields(order) if f.name not in _DB_ONLY}
        for order_id, order in engine.live.items()
    }
    bids = list(engine.book.makers(taker_side=Side.SELL))
    asks = list(engine.book.makers(taker_side=Side.BUY))
    stops = engine.stops.orders()
    # Every order in the book or the stops is the very object `live` holds (cancels find it there).
    assert sorted(id(o) for o in [*bids, *asks, *stops]) == sorted(id(o) for o in engine.live.values())
    return {
        "spec": dataclasses.asdict(engine.spec),
        "live": live,
        "bids": [o.id for o in bids],
        "asks": [o.id for o in asks],
        "stops": [o.id for o in stops],
    }


side = st.sampled_from(["buy", "sell"])
resting_quantity = st.integers(1, 20).map(lambda n: f"{D(n) / 10}")
taking_quantity = st.integers(1, 5).map(lambda n: f"{D(n) / 10}")
ticks = st.integers(-3, 3)
trader = st.integers(0, 2)
tif = st.sampled_from(["GTC", "GTC", "IOC", "FOK"])
limit = st.tuples(st.just("limit"), trader, side, ticks, resting_quantity, tif)
commands = st.one_of(
    limit,
    limit,
    st.tuples(st.just("market"), trader, side, taking_quantity),
    st.tuples(st.just("stop"), trader, side, st.sampled_from(["stop_loss", "take_profit"]), ticks, taking_quantity),
    st.tuples(st.just("stop"), trader, side, st.sampled_from(["stop_loss", "take_profit"]), ticks, taking_quantity),
    st.tuples(st.just("cancel"), trader, st.integers(0, 5)),
    st.tuples(st.just("cancel_all"), trader),
    st.tuples(st.just("reference"), ticks),
)
batches = st.lists(st.lists(commands, min_size=1, max_size=4).map(lambda batch: ("batch", batch)), max_size=4)
standing_by = st.lists(
    st.one_of(
        st.lists(commands, min_size=1, max_size=4).map(lambda batch: ("batch", batch)),
        st.sampled_from([("catch_up",), ("staff_active",), ("staff_minimum",)]),
    ),
    min_size=1,
    max_size=30,
)


def _command(spec: tuple[Any, ...], *, market: Market, users: list[int], leader: Sequencer) -> c.Command:
    kind, rest = spec[0], spec[1:]
    if kind == "reference":
        return c.reference_price_command(market_id=market.pk, price=str(100 + rest[0]))
    user = users[rest[0]]
    if kind == "cancel":
        mine = sorted(order_id for engine in leader.markets for order_id, o in engine.live.items() if o.user_id == user)
        order_id = mine[rest[1] % len(mine)] if mine else 10**9
        return c.cancel_command(user_id=user, order_id=order_id, market_id=market.pk)
    if kind == "cancel_all":
        return c.cancel_all_command(user_id=user, market_id=market.pk)
    fields: dict[str, Any] = {"market": market.symbol, "side": rest[1]}
    if kind == "limit":
        fields |= {"type": "limit", "price": str(100 + rest[2]), "quantity": rest[3], "time_in_force": rest[4]}
    elif kind == "market":
        fields |= {"type": "market", "quantity": rest[2], "time_in_force": "IOC"}
    else:
        fields |= {"type": rest[2], "stop_price": str(100 + rest[3]), "quantity": rest[4]}  # IOC, as a market order
    return c.place_command(user_id=user, fields=fields)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(before=batches, between=batches, after=standing_by)
def test_a_caught_up_standby_holds_the_books_a_fresh_load_builds(db, before, between, after):
    n = next(_symbols)
    market = market_create(f"W{n}-V{n}", price_tick="1", quantity_step="0.1", min_quantity="0.1", reference_price="100")
    users = []
    for _ in range(3):
        user = UserFactory()
        fund(user, market.base.symbol, "1000")
        fund(user, market.quote.symbol, "1000000")
        users.append(user.pk)
    leader = Sequencer(symbols={market.symbol})
    standby = WarmStandby(Sequencer(symbols={market.symbol}))
    for step in [*before, ("marks",), *between, ("load",), *after]:
        kind = step[0]
        if kind == "batch":
            answers = leader.run_batch([_command(spec, market=market, users=users, leader=leader) for spec in step[1]])
            assert all(answer["status"] < 500 for answer in answers), answers
        elif kind == "marks":
            standby.marks_read()
        elif kind == "load":  # batches may have committed since the marks: read again, idempotently
            standby.sequencer.load()
        elif kind == "catch_up":
            standby.catch_up()
        elif kind == "staff_active":  # a staff edit of the market row, outside any engine
            Market.objects.filter(pk=market.pk).update(is_active=not Market.objects.get(pk=market.pk).is_active)
        elif kind == "staff_minimum":
            current = Market.objects.get(pk=market.pk).min_quantity
            Market.objects.filter(pk=market.pk).update(min_quantity=D("0.2") if current == D("0.1") else D("0.1"))

    standby.catch_up()
    fresh = Sequencer(symbols={market.symbol})
    fresh.load()
    (expected,) = fresh.markets
    (caught_up,) = standby.sequencer.markets
    assert _state(caught_up) == _state(expected)


def test_the_standby_follows_a_market_created_after_it_loaded(db):
    """A catch-all shard: a market created while standing by is loaded by the next catch-up."""
    first = market_create("AAA-USDT", price_tick="1", quantity_step="0.1", min_quantity="0.1", reference_price="100")
    user = UserFactory()
    for asset in ("AAA", "BBB", "USDT"):
        fund(user, asset, "1000000")
    leader = Sequencer()
    standby = WarmStandby(Sequencer())
    assert standby.load() == 0
    second = market_create("BBB-USDT", price_tick="1", quantity_step="0.1", min_quantity="0.1", reference_price="100")
    for market in (first, second):
        fields = {"market": market.symbol, "side": "buy", "type": "limit", "price": "99", "quantity": "1"}
        (answer,) = leader.run_batch([c.place_command(user_id=user.pk, fields=fields)])
        assert answer["status"] == 201

    caught = standby.catch_up()

    assert caught.orders == 2 and standby.live_orders == 2
    fresh = Sequencer()
    fresh.load()
    assert {e.spec.symbol: _state(e) for e in standby.sequencer.markets} == {
        e.spec.symbol: _state(e) for e in fresh.markets
    }


def test_a_maker_filled_again_without_a_status_change_is_caught_up_from_its_trade(db):
    """A second partial fill of a resting order writes no event (its status stays
    partially_filled): the standby learns it from the trade."""
    market = market_create("MKR-USDT", price_tick="1", quantity_step="0.1", min_quantity="0.1", reference_price="100")
    maker, taker = UserFactory(), UserFactory()
    fund(maker, "MKR", "10")
    fund(taker, "USDT", "10000")
    leader = Sequencer(symbols={market.symbol})
    standby = WarmStandby(Sequencer(symbols={market.symbol}))
    standby.load()
    ask = {"market": market.symbol, "side": "sell", "type": "limit", "price": "100", "quantity": "1"}
    (placed,) = leader.run_batch([c.place_command(user_id=maker.pk, fields=ask)])
    take = {"market": market.symbol, "side": "buy", "type": "market", "quantity": "0.2"}
    leader.run_batch([c.place_command(user_id=taker.pk, fields=take)])
    standby.catch_up()
    leader.run_batch([c.place_command(user_id=taker.pk, fields=take)])

    standby.catch_up()

    (engine,) = standby.sequencer.markets
    resting = engine.live[int(placed["order"]["id"])]
    assert (resting.status, resting.filled_quantity) == ("partially_filled", D("0.4"))
    fresh = Sequencer(symbols={market.symbol})
    fresh.load()
    assert _state(engine) == _state(fresh.markets[0])


def test_a_catch_up_that_failed_half_way_is_done_again_in_full(db, monkeypatch):
    """The database went away after one market was applied: the marks did not move, so the
    next catch-up reads that market's changes again (idempotently) and the other's."""
    markets = [
        market_create(symbol, price_tick="1", quantity_step="0.1", min_quantity="0.1", reference_price="100")
        for symbol in ("CCC-USDT", "DDD-USDT")
    ]
    user = UserFactory()
    for asset in ("CCC", "DDD", "USDT"):
        fund(user, asset, "1000000")
    leader = Sequencer()
    standby = WarmStandby(Sequencer())
    standby.load()
    for market in markets:
        fields = {"market": market.symbol, "side": "sell", "type": "limit", "price": "101", "quantity": "1"}
        leader.run_batch([c.place_command(user_id=user.pk, fields=fields)])
    applied = []
    real = standby_module.market_engine_catch_up

    def failing_after_one(**kwargs: Any) -> int:
        if applied:
            raise OperationalError("the database went away")
        applied.append(real(**kwargs))
        return applied[-1]

    monkeypatch.setattr(standby_module, "market_engine_catch_up", failing_after_one)
    with pytest.raises(OperationalError):
        standby.catch_up()
    assert standby.live_orders == 1
    monkeypatch.setattr(standby_module, "market_engine_catch_up", real)

    assert standby.catch_up().orders == 2

    fresh = Sequencer()
    fresh.load()
    assert {e.spec.symbol: _state(e) for e in standby.sequencer.markets} == {
        e.spec.symbol: _state(e) for e in fresh.markets
    }
