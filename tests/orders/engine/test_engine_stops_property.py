"""Stops after every trade (docs/matching.md, Stops), on the engine's MarketEngine:
for random command streams, every stop whose condition held at any trade made while it
was pending is triggered, and no other; cascades fire without a cap."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.engine import HouseInventory, MarketRules, OrderStatus, OrderType, stop_triggered
from orders.engine.book import LiveOrder
from orders.engine.types import Side, TimeInForce
from tests.orders.engine.exchange import EngineExchange
from tests.orders.engine.steps import cancel_steps, limit_steps, market_steps, step_apply, stop_steps

D = Decimal
RULES = MarketRules(
    reference_price=D(100),
    max_slippage_bps=2000,  # +-20: market orders and stops reach far into the book
    price_tick=D(1),
    quantity_step=D(1),
    house=HouseInventory(base_available=D(50), quote_available=D(5000), max_notional=D(500), slippage_percent=D(1)),
)

commands = st.lists(
    st.one_of(
        limit_steps(prices=(85, 115), time_in_force=[TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC]),
        market_steps(),
        stop_steps(stop_prices=(88, 112)),
        cancel_steps(among=50),
    ),
    min_size=5,
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=commands)
def test_every_stop_reached_by_a_trade_fires_and_no_other(commands):
    exchange = EngineExchange.create(rules=RULES, owners=[1, 2, 3, 4], base=D(200), quote=D(50_000), ttx={})
    # For each stop that went pending: the trades made while it was pending are
    # trades[placed_at:cancelled_at] (cancelled_at None: up to now).
    pending_window: dict[int, tuple[LiveOrder, int, int | None]] = {}
    for command in commands:
        kind = command[0]
        trades_before = len(exchange.journal.trades)
        touched = step_apply(exchange, command)
        if kind == "stop":
            stop = touched
            if stop is not None and len(exchange.journal.trades) == trades_before and stop.triggered_at is None:
                assert stop.status is OrderStatus.PENDING_TRIGGER
                pending_window[stop.seq] = (stop, trades_before, None)
        elif kind == "cancel" and touched is not None and touched.seq in pending_window:
            stop, placed_at, _ = pending_window[touched.seq]
            pending_window[touched.seq] = (stop, placed_at, len(exchange.journal.trades))
        exchange.assert_locks_match()

    trades = exchange.journal.trades
    for stop, placed_at, cancelled_at in pending_window.values():
        window = trades[placed_at:cancelled_at]
        reached = any(
            stop_triggered(order_type=stop.type, side=stop.side, stop_price=stop.stop_price, last_price=trade.price)
            for trade in window
            if trade.taker is not stop
        )
        fired = stop.triggered_at is not None or (
            stop.status is OrderStatus.ERROR and stop.status_reason == "insufficient_funds"
        )
        cancelled = stop.status is OrderStatus.CANCELLED
        assert fired == (reached and not (cancelled and not fired)), (stop, [t.price for t in window])
        if not fired:
            assert stop.status in (OrderStatus.PENDING_TRIGGER, OrderStatus.CANCELLED)
            assert not reached
        else:
            assert stop.status is not OrderStatus.PENDING_TRIGGER  # it ran, in this same command stream


def test_a_cascade_fires_every_stop_it_reaches_without_a_cap():
    """250 sell stop-losses one tick apart (398 down to 149) over one bid per tick: a market
    sell of 2 trades at 399 and 398, which fires the stop at 398; its sell trades at 397 and
    fires the next, and so on down the book: 250 stops in one command."""
    exchange = EngineExchange.create(rules=RULES, owners=[1, 2, 3, 4], base=D(10_000), quote=D(10**9), ttx={})
    exchange.engine.rules = exchange.engine.rules.__class__(
        rates=exchange.engine.rules.rates,
        max_slippage_bps=10_000,
        house=exchange.engine.rules.house.__class__(enabled=False, max_notional_usd=D(0), slippage_percent=D(0)),
        house_user_id=exchange.engine.rules.house_user_id,
        fee_user_id=exchange.engine.rules.fee_user_id,
    )
    exchange.engine.spec.reference_price = D(400)
    for price in range(399, 99, -1):  # one bid per tick from 399 down to 100
        exchange.place(exchange.new_order(owner=1, side=Side.BUY, kind=OrderType.LIMIT, quantity=D(1), price=D(price)))
    stops = [
        exchange.place(
            exchange.new_order(
                owner=2,
                side=Side.SELL,
                kind=OrderType.STOP_LOSS,
                quantity=D(1),
                stop_price=D(price),
                tif=TimeInForce.IOC,
            )
        )
        for price in range(398, 148, -1)
    ]
    assert all(stop is not None and stop.status is OrderStatus.PENDING_TRIGGER for stop in stops)
    exchange.place(
        exchange.new_order(owner=3, side=Side.SELL, kind=OrderType.MARKET, quantity=D(2), tif=TimeInForce.IOC)
    )
    assert all(stop.status is OrderStatus.FILLED for stop in stops if stop), [s.status for s in stops if s][:5]
    assert [trade.price for trade in exchange.journal.trades] == [D(p) for p in range(399, 147, -1)]
    exchange.assert_locks_match()
