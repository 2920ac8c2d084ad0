"""A warm standby: the books of a shard loaded while another engine leads it, and kept
current from the database, so that taking over costs a catch-up of the last changes
instead of a load of every live order (docs/matching.md, "Warm standby").

The marks are read before the load (orders.sequencer.recovery.HighWater); each catch-up
re-reads the orders named by the shard's events and trades since, and the market rows."""

from __future__ import annotations

import time
from dataclasses import dataclass

from orders.models import Market
from orders.sequencer.loop import Sequencer
from orders.sequencer.recovery import (
    HighWater,
    changed_orders_read,
    high_water_read,
    market_engine_catch_up,
    market_spec_refresh,
    trade_high_water,
)


@dataclass(frozen=True, slots=True)
class CatchUp:
    orders: int  # order rows re-read
    seconds: float


class WarmStandby:
    def __init__(self, sequencer: Sequencer) -> None:
        self.sequencer = sequencer
        self.mark = HighWater()

    def _owned(self) -> list[Market]:
        return [market for market in Market.objects.order_by("id") if self.sequencer.owns(market.symbol)]

    def load(self) -> int:
        """The marks, then the books; returns the live orders loaded."""
        self.marks_read()
        return self.sequencer.load()

    def marks_read(self) -> None:
        """Before the books are loaded: what commits in between is read again, by the first
        catch-up (re-reading an order is idempotent)."""
        self.mark = high_water_read(market_ids=[market.pk for market in self._owned()])

    def catch_up(self) -> CatchUp:
        """Apply what the shard committed since the last read."""
        began = time.monotonic()
        loaded = {engine.spec.id for engine in self.sequencer.markets}
        for market in self._owned():
            if market.pk not in loaded:  # created since: its mark first, then its book
                self.mark.trade_ids[market.pk] = trade_high_water(market_id=market.pk)
        engines = {engine.spec.id: engine for engine in self.sequencer.markets_owned()}
        changed, mark = changed_orders_read(market_ids=list(engines), since=self.mark)
        orders = sum(
            market_engine_catch_up(engine=engines[market_id], order_ids=ids)
            for market_id, ids in changed.items()
            if ids
        )
        # Moved on once applied: a catch-up that failed half-way is done again in full.
        self.mark = mark
        for market in Market.objects.filter(pk__in=list(engines)):  # read after the orders: as new as they
            market_spec_refresh(engine=engines[market.pk], market=market)
        self.sequencer.undo.clear()  # what the shard committed is never taken back
        return CatchUp(orders=orders, seconds=time.monotonic() - began)

    @property
    def live_orders(self) -> int:
        return sum(len(engine.live) for engine in self.sequencer.markets)
