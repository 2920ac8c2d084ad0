"""Random command streams for the engine's property tests: limit, market and stop
placements, cancels and reference-price changes as hypothesis strategies of plain tuples,
and how one step is applied to an EngineExchange (tests/orders/engine/exchange.py)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from orders.engine import OrderType
from orders.engine.book import LiveOrder
from orders.engine.types import SelfTradePrevention, Side, TimeInForce
from tests.orders.engine.exchange import EngineExchange

Step = tuple[Any, ...]
_OWNERS = st.integers(1, 4)
_SIDES = st.sampled_from(list(Side))


def limit_steps(
    *, prices: tuple[int, int], time_in_force: Sequence[TimeInForce], stp: bool = False
) -> st.SearchStrategy[Step]:
    """Limit orders of 1-6 at a price in `prices` (both sides, so some cross); `stp`: any
    self-trade prevention, else the default."""
    return st.tuples(
        st.just("limit"),
        _OWNERS,
        _SIDES,
        st.integers(1, 6),
        st.integers(*prices),
        st.sampled_from(list(time_in_force)),
        st.sampled_from(list(SelfTradePrevention)) if stp else st.just(SelfTradePrevention.SKIP),
    )


def market_steps() -> st.SearchStrategy[Step]:
    return st.tuples(st.just("market"), _OWNERS, _SIDES, st.integers(1, 8))


def stop_steps(*, stop_prices: tuple[int, int]) -> st.SearchStrategy[Step]:
    """Stop-loss and take-profit orders of 1-4 (their market orders run when triggered)."""
    return st.tuples(
        st.just("stop"),
        _OWNERS,
        _SIDES,
        st.integers(1, 4),
        st.integers(*stop_prices),
        st.sampled_from([OrderType.STOP_LOSS, OrderType.TAKE_PROFIT]),
    )


def cancel_steps(*, among: int) -> st.SearchStrategy[Step]:
    """A cancel of one of the live orders (its index modulo how many there are)."""
    return st.tuples(st.just("cancel"), st.integers(0, among))


def reference_steps(*, prices: tuple[int, int]) -> st.SearchStrategy[Step]:
    return st.tuples(st.just("reference"), st.integers(*prices))


def step_apply(exchange: EngineExchange, step: Step) -> LiveOrder | None:
    """Apply `step`: the order it placed (None: refused for funds), the order it cancelled
    (None: nothing live), None for a reference price."""
    kind = step[0]
    if kind == "limit":
        _, owner, side, quantity, price, tif, stp = step
        return exchange.place(
            exchange.new_order(
                owner=owner, side=side, kind=OrderType.LIMIT, quantity=Decimal(quantity), price=Decimal(price),
                tif=tif, stp=stp,
            )
        )  # fmt: skip
    if kind == "market":
        _, owner, side, quantity = step
        return exchange.place(
            exchange.new_order(
                owner=owner, side=side, kind=OrderType.MARKET, quantity=Decimal(quantity), tif=TimeInForce.IOC
            )
        )
    if kind == "stop":
        _, owner, side, quantity, stop_price, stop_type = step
        return exchange.place(
            exchange.new_order(
                owner=owner,
                side=side,
                kind=stop_type,
                quantity=Decimal(quantity),
                stop_price=Decimal(stop_price),
                tif=TimeInForce.IOC,
            )
        )
    if kind == "cancel":
        live = [order for order in exchange.orders if order.is_live]
        if not live:
            return None
        target = live[step[1] % len(live)]
        exchange.cancel(target)
        return target
    if kind == "reference":
        exchange.engine.set_reference_price(Decimal(step[1]), journal=exchange.journal)
        return None
    raise ValueError(f"unknown step {kind!r}")
