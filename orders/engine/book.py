"""The in-memory book of one market: resting orders in price-time priority and the
pending stop orders, as the sequencer keeps them between commands. Pure Python."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sortedcontainers import SortedDict, SortedList

from orders.engine.stops import fires_on_fall
from orders.engine.types import OrderStatus, OrderType, SelfTradePrevention, Side, TimeInForce

if TYPE_CHECKING:
    from orders.engine.undo import Undo


@dataclass(slots=True, eq=False)
class LiveOrder:
    """An order as the sequencer holds it: every column it persists, changed in memory and
    written once per batch. `id` is None until the batch that created it is written;
    `seq` orders orders by age before that (it is the id for orders loaded from the
    database, and above every loaded id for new ones)."""

    seq: int
    user_id: int
    market_id: int
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    stp: SelfTradePrevention
    price: Decimal | None
    stop_price: Decimal | None
    quantity: Decimal
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    filled_quantity: Decimal = Decimal(0)
    quote_filled: Decimal = Decimal(0)
    fee_paid: Decimal = Decimal(0)
    locked_amount: Decimal = Decimal(0)
    status_reason: str | None = None
    client_order_id: str | None = None
    request_fingerprint: str = ""
    triggered_at: datetime | None = None
    filled_at: datetime | None = None
    cancelled_at: datetime | None = None
    closed_at: datetime | None = None
    id: int | None = None
    # The placing request's correlation id (logs and the trade outbox follow it).
    correlation_id: str = ""
    # Status changes not yet written: (status, reason).
    pending_events: list[tuple[OrderStatus, str | None]] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def is_live(self) -> bool:
        return self.status.is_live


class OrderBook:
    """Resting orders per side: price levels in a sorted map, oldest first within a level."""

    def __init__(self) -> None:
        self._levels: dict[Side, SortedDict] = {Side.BUY: SortedDict(), Side.SELL: SortedDict()}
        self._count = 0
        self.undo: Undo | None = None  # set while a sequencer's batches may be taken back

    def __len__(self) -> int:
        return self._count

    def add(self, order: LiveOrder) -> None:
        if order.price is None:
            raise ValueError("only priced orders rest")
        if self.undo is not None:
            self.undo.record(self._take_out, order)
        self._insert(order, None)

    def remove(self, order: LiveOrder) -> None:
        index = self._take_out(order)
        if self.undo is not None:
            self.undo.record(self._insert, order, index)

    def _insert(self, order: LiveOrder, index: int | None) -> None:
        """At the end of its price level, or back at `index` (a removal taken back)."""
        levels = self._levels[order.side]
        level = levels.get(order.price)
        if level is None:
            level = levels[order.price] = deque()
        if index is None:
            level.append(order)
        else:
            level.insert(index, order)
        self._count += 1

    def _take_out(self, order: LiveOrder) -> int:
        """Removes `order`; returns where it was in its level."""
        levels = self._levels[order.side]
        level = levels[order.price]
        if level[0] is order:
            index = 0
            level.popleft()
        else:
            index = level.index(order)
            del level[index]
        if not level:
            del levels[order.price]
        self._count -= 1
        return index

    def makers(self, *, taker_side: Side) -> Iterator[LiveOrder]:
        """The opposite side best price first (lowest ask for a buyer, highest bid for a
        seller), oldest first within a price. Lazy; the book must not change meanwhile."""
        maker_side = taker_side.opposite
        levels = self._levels[maker_side]
        # The SortedDict's own iterators: its keys() view wraps them in a generator, which
        # cost more than the rest of a non-crossing order's walk.
        prices = reversed(levels) if maker_side is Side.BUY else iter(levels)
        for price in prices:
            yield from levels[price]

    def best(self, side: Side) -> Decimal | None:
        """The best price of a side (highest bid, lowest ask), or None."""
        levels = self._levels[side]
        return None if not levels else levels.peekitem(-1 if side is Side.BUY else 0)[0]

    def level(self, side: Side, price: Decimal) -> tuple[Decimal, int]:
        """(quantity, orders) resting at one price; (0, 0) when none."""
        level = self._levels[side].get(price)
        return (Decimal(0), 0) if not level else (sum((o.remaining for o in level), Decimal(0)), len(level))

    def levels(self, side: Side) -> list[tuple[Decimal, Decimal, int]]:
        """(price, quantity, orders) per level, best first."""
        levels = self._levels[side]
        prices = reversed(levels) if side is Side.BUY else iter(levels)
        return [(price, sum((o.remaining for o in levels[price]), Decimal(0)), len(levels[price])) for price in prices]


class StopBook:
    """Pending stop orders, indexed by the direction that fires them, so that the stops a
    trade price reaches are found without looking at the others."""

    def __init__(self) -> None:
        # (stop price, seq, order): fire when the price falls to the stop or below ...
        self._on_fall: SortedList = SortedList(key=lambda entry: (entry[0], entry[1]))
        # ... or rises to it or above.
        self._on_rise: SortedList = SortedList(key=lambda entry: (entry[0], entry[1]))
        self.undo: Undo | None = None  # set while a sequencer's batches may be taken back

    def __len__(self) -> int:
        return len(self._on_fall) + len(self._on_rise)

    def _index(self, order: LiveOrder) -> SortedList:
        return self._on_fall if fires_on_fall(order_type=order.type, side=order.side) else self._on_rise

    def add(self, order: LiveOrder) -> None:
        if self.undo is not None:
            self.undo.record(self._discard, order)
        self._put(order)

    def remove(self, order: LiveOrder) -> None:
        self._discard(order)
        if self.undo is not None:
            self.undo.record(self._put, order)

    # A stop's place among the others is its (stop price, seq): put back, it is where it was.
    def _put(self, order: LiveOrder) -> None:
        self._index(order).add((order.stop_price, order.seq, order))

    def _discard(self, order: LiveOrder) -> None:
        self._index(order).remove((order.stop_price, order.seq, order))

    def take_reached(self, price: Decimal) -> list[LiveOrder]:
        """Remove and return every stop that a trade at `price` fires (touching included),
        oldest first: falls fire stops at or above the price, rises at or below it."""
        # Called after every fill: the common case, no stop reached, is answered from each
        # index's extreme entry (highest fall, lowest rise) without building ranges.
        on_fall, on_rise = self._on_fall, self._on_rise
        falls = bool(on_fall) and on_fall[-1][0] >= price
        rises = bool(on_rise) and on_rise[0][0] <= price
        if not (falls or rises):
            return []
        fall = list(on_fall.irange_key(min_key=(price, float("-inf")))) if falls else []
        rise = list(on_rise.irange_key(max_key=(price, float("inf")))) if rises else []
        for entry in fall:
            self._on_fall.remove(entry)
        for entry in rise:
            self._on_rise.remove(entry)
        if self.undo is not None:
            for entry in fall + rise:
                self.undo.record(self._put, entry[2])
        return sorted((entry[2] for entry in fall + rise), key=lambda order: order.seq)

    def orders(self) -> list[LiveOrder]:
        return [entry[2] for entry in self._on_fall] + [entry[2] for entry in self._on_rise]
