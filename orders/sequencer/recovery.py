"""Rebuilding a market's book from the database: at engine start (a standby too), and
whenever a batch failed after changing memory (the database is the truth: a batch that did
not commit left nothing there, so reloading undoes it in memory too); and keeping a
standby's books current from the changes committed since high-water marks."""

from __future__ import annotations

import gc
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, cast

import psycopg
from django.conf import settings
from django.db import connection
from django.db.models import Field
from psycopg.pq import Format

from orders.engine.book import LiveOrder
from orders.engine.market import HouseSettings, MarketEngine, MarketSpec, TradingRules
from orders.engine.settlement import FeeRates
from orders.engine.types import LIVE_STATUSES, OrderStatus, OrderType, SelfTradePrevention, Side, TimeInForce
from orders.models import Market, Order, OrderEvent, Trade
from orders.sequencer.writer import ORDER_UPDATE_FIELDS
from orders.system_accounts import fee_account_user_id, house_user_id

# LiveOrder's fields in declaration order, as far as `id`: _live_order passes them
# positionally (a third of the cost of keywords, at 100,000s of orders per start).
_DECLARED = tuple(f.name for f in fields(LiveOrder))
_POSITIONAL = _DECLARED[: _DECLARED.index("id") + 1]
# Not read: `seq` is the id, the market is the one loaded, and a live order has no
# filled_at, cancelled_at or closed_at. The columns read, in that same order, the id first.
_NOT_READ = {"seq", "market_id", "filled_at", "cancelled_at", "closed_at", "id"}
_LIVE_FIELDS = ("id", *(name for name in _POSITIONAL if name not in _NOT_READ))


def trading_rules() -> TradingRules:
    return TradingRules(
        rates=FeeRates(taker_bps=settings.TAKER_FEE_BPS, maker_bps=settings.MAKER_FEE_BPS),
        max_slippage_bps=settings.MAX_MARKET_SLIPPAGE_BPS,
        house=HouseSettings(
            enabled=settings.AUTO_FILL_ENABLED,
            max_notional_usd=settings.MAX_AUTO_FILL_USD,
            slippage_percent=settings.AUTO_FILL_SLIPPAGE_PERCENT,
        ),
        house_user_id=house_user_id(),
        fee_user_id=fee_account_user_id(),
    )


def market_spec(market: Market) -> MarketSpec:
    """The row as the engine holds it (its quote asset's symbol too: read with it, through
    select_related("quote"), or here)."""
    return MarketSpec(
        id=market.pk,
        symbol=market.symbol,
        base_id=market.base_id,
        quote_id=market.quote_id,
        quote_symbol=market.quote.symbol,
        price_tick=market.price_tick,
        quantity_step=market.quantity_step,
        min_quantity=market.min_quantity,
        reference_price=market.reference_price,
        last_price=market.last_price,
        is_active=market.is_active,
    )


_SIDES = {value.value: value for value in Side}
_TYPES = {value.value: value for value in OrderType}
_TIFS = {value.value: value for value in TimeInForce}
_STPS = {value.value: value for value in SelfTradePrevention}
_STATUSES = {value.value: value for value in OrderStatus}
LOAD_CHUNK = 10_000
_TIMESTAMPTZ = psycopg.adapters.types["timestamptz"].oid


def _live_rows(market_id: int) -> Iterator[tuple[Any, ...]]:
    """The market's live orders, _LIVE_FIELDS per row, in id order.

    PostgreSQL: a server-side cursor of psycopg's own (no per-value Django converter), in
    text, with psycopg's own timestamptz loader instead of the one Django installs on its
    connections (a Python subclass: parsing 200,000 timestamps with it was most of a
    start's CPU). Text rather than binary: numerics and strings decode faster from text
    (Decimal of a string in C), and with that loader timestamps do too. Other backends:
    the ORM."""
    statuses = [status.value for status in LIVE_STATUSES]
    if connection.vendor != "postgresql":
        yield from (
            Order.objects.filter(market_id=market_id, status__in=statuses)
            .order_by("id")
            .values_list(*_LIVE_FIELDS)
            .iterator(chunk_size=LOAD_CHUNK)
        )
        return
    meta = Order._meta
    columns = ", ".join(
        connection.ops.quote_name(str(cast("Field[Any, Any]", meta.get_field(name)).column)) for name in _LIVE_FIELDS
    )
    sql = (
        f"SELECT {columns} FROM {connection.ops.quote_name(meta.db_table)} "  # noqa: S608  (identifiers from the model)
        "WHERE market_id = %s AND status = ANY(%s) ORDER BY id"
    )
    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor(name=f"engine_load_{market_id}_{os.getpid()}", withhold=True) as cursor:
        cursor.adapters.register_loader(_TIMESTAMPTZ, psycopg.adapters.get_loader(_TIMESTAMPTZ, Format.TEXT))
        cursor.itersize = LOAD_CHUNK
        cursor.execute(sql, [market_id, statuses])
        yield from cursor


def market_engine_load(*, market: Market, rules: TradingRules) -> MarketEngine:
    """The market with its live orders (resting and pending stops) read in id order: the
    book's time priority is the id order."""
    engine = MarketEngine(spec=market_spec(market), rules=rules)
    market_id = market.pk
    # The collector would walk the growing heap again and again while 100,000s of orders
    # are created (a third of a large load); it runs once, after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _restore_all(engine, market_id)
    finally:
        if collecting:
            gc.enable()
    return engine


# Net allocations of tracked objects between two young collections in the engine process
# (Python's default: 700). A batch of 100 commands holds a few thousand objects at once
# (commands, journal, answers, stream messages) and freed nearly all of them afterwards,
# yet set off about four collections, which walked what was still alive: 18 µs per command,
# ~7% of the sequencer's CPU in scripts/batch_cost.py (docs/performance.md, "The young
# generation's threshold").
GC_YOUNG_THRESHOLD = 10_000


def heap_settle() -> None:
    """Once the books are loaded: what is in memory now (the resting orders and pending
    stops above all) lives as long as the engine, so it is moved out of the cyclic garbage
    collector's reach (gc.freeze). Each of its full collections walked every resting order
    while the batches waited (with 100,000 of them, the engine bench's batch p99 was
    90-118 ms, 37-44 ms frozen: docs/performance.md). A loaded order holds values only, no
    reference cycle that freezing could keep alive; what later batches create is collected
    as before, its young generation at GC_YOUNG_THRESHOLD rather than every 700."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _restore_all(engine: MarketEngine, market_id: int) -> None:
    for row in _live_rows(market_id):
        engine.restore(_live_order(row, market_id=market_id))


# The columns _live_order converts or places itself, where it expects them; what follows
# them passes through as read, in LiveOrder's order. Checked at import, so that a
# reordering of LiveOrder cannot silently swap two columns.
_LEADING = ("id", "user_id", "side", "type", "time_in_force", "stp", "price", "stop_price", "quantity", "status")
_TRAILING = ("filled_at", "cancelled_at", "closed_at", "id")
_PASSED = 10  # created_at ... triggered_at
_Passed = tuple[Any, Any, Any, Any, Any, Any, Any, Any, Any, Any]
if (
    _LIVE_FIELDS[: len(_LEADING)] != _LEADING
    or _POSITIONAL[-len(_TRAILING) :] != _TRAILING
    or len(_LIVE_FIELDS) != len(_LEADING) + _PASSED
):
    raise ImportError("orders.engine.book.LiveOrder's fields changed order: update recovery._live_order")


def _live_order(row: tuple[Any, ...], *, market_id: int) -> LiveOrder:
    """A LiveOrder of a row of _LIVE_FIELDS (its `seq` is its id: the book's age order)."""
    order_id, user_id, side, order_type, time_in_force, stp, price, stop_price, quantity, status, *rest = row
    return LiveOrder(
        order_id,  # seq
        user_id,
        market_id,
        _SIDES[side],
        _TYPES[order_type],
        _TIFS[time_in_force],
        _STPS[stp],
        price,
        stop_price,
        quantity,
        _STATUSES[status],
        *cast("_Passed", rest),  # created_at ... triggered_at, as read
        None,  # filled_at, cancelled_at, closed_at: a live order has none
        None,
        None,
        order_id,  # id
    )


# --- a warm standby: books loaded while standing by, kept current -----------------------
#
# Only the active engine of a shard writes the orders, events and trades of its markets, one
# batch transaction after the other: a batch still open has ids above every committed one
# of the shard. So "the last event / trade id of the shard seen" is a durable high-water
# mark: whatever the shard commits later has a higher id, whatever is at or below it is
# committed. (Ids of other shards interleave, which is why the mark is the shard's own and
# never the table's maximum: a batch of this shard may hold ids below another shard's
# committed ones.) Every change of an order is written with an event (any status change,
# its creation included) or a trade (a maker's fill): re-reading the orders those rows name
# brings the books to the database's state.


@dataclass(slots=True)
class HighWater:
    """How far a standby has read its shard's changes."""

    event_id: int = 0  # the last order event of the shard's orders
    trade_ids: dict[int, int] = field(default_factory=dict)  # market id -> its last trade


def trade_high_water(*, market_id: int) -> int:
    """The market's last trade id (an index scan of trade_market_recent), 0 if none."""
    return Trade.objects.filter(market_id=market_id).order_by("-id").values_list("id", flat=True).first() or 0


def high_water_read(*, market_ids: Collection[int]) -> HighWater:
    """The marks of `market_ids`, read BEFORE their books are loaded: what commits between
    the two is read again by the first catch-up (re-reading an order is idempotent)."""
    last_event = (
        OrderEvent.objects.filter(order__market_id__in=list(market_ids))
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return HighWater(
        event_id=last_event or 0,
        trade_ids={market_id: trade_high_water(market_id=market_id) for market_id in market_ids},
    )


def changed_orders_read(*, market_ids: Collection[int], since: HighWater) -> tuple[dict[int, set[int]], HighWater]:
    """The orders of `market_ids` written since `since` (market id -> order ids), and the
    new marks. A market without a mark yet is read from its first trade."""
    changed: dict[int, set[int]] = {market_id: set() for market_id in market_ids}
    event_id = since.event_id
    for row_id, order_id, market_id in OrderEvent.objects.filter(
        id__gt=since.event_id, order__market_id__in=list(market_ids)
    ).values_list("id", "order_id", "order__market_id"):
        changed[market_id].add(order_id)
        event_id = max(event_id, row_id)
    trade_ids = dict(since.trade_ids)
    for market_id in market_ids:
        for row_id, taker_id, maker_id in Trade.objects.filter(
            market_id=market_id, id__gt=since.trade_ids.get(market_id, 0)
        ).values_list("id", "taker_order_id", "maker_order_id"):
            changed[market_id].add(taker_id)
            if maker_id is not None:
                changed[market_id].add(maker_id)
            trade_ids[market_id] = max(trade_ids.get(market_id, 0), row_id)
    return changed, HighWater(event_id=event_id, trade_ids=trade_ids)


def market_engine_catch_up(*, engine: MarketEngine, order_ids: Collection[int]) -> int:
    """Bring the named orders of `engine`'s market to their rows: updated in place (a
    resting order keeps its place in the queue, a stop its place among the stops), added
    (new ones) or removed (closed, fired stops included). Returns the rows read."""
    rows: list[tuple[Any, ...]] = []
    wanted = sorted(order_ids)
    for start in range(0, len(wanted), LOAD_CHUNK):
        rows += Order.objects.filter(pk__in=wanted[start : start + LOAD_CHUNK]).values_list(*_LIVE_FIELDS)
    for row in sorted(rows, key=lambda row: row[0]):
        fresh = _live_order(row, market_id=engine.spec.id)
        known = engine.live.get(row[0])
        if known is None:
            if fresh.is_live:  # new since the last read: above every id in memory, so last in its level
                engine.restore(fresh)
            continue
        was_stop = known.status is OrderStatus.PENDING_TRIGGER
        if not fresh.is_live:
            (engine.stops if was_stop else engine.book).remove(known)
            del engine.live[row[0]]
            continue
        if was_stop and fresh.status is not OrderStatus.PENDING_TRIGGER:
            # A stop executes as a market order when it fires and never rests
            # (orders.engine.matching): one that did would need its place in the book.
            raise StandbyDiverged(f"order {row[0]}: a fired stop resting in the book")
        for name in ORDER_UPDATE_FIELDS:  # what a batch changes on an order (the rest is fixed at placement)
            setattr(known, name, getattr(fresh, name))
    return len(rows)


class StandbyDiverged(RuntimeError):
    """The database holds what a catch-up cannot apply in place: the standby loads again."""


def market_spec_refresh(*, engine: MarketEngine, market: Market) -> None:
    """Staff changes and the last / reference price, as the market row has them now (the
    pair stays as created)."""
    spec = engine.spec
    spec.is_active, spec.price_tick, spec.quantity_step = market.is_active, market.price_tick, market.quantity_step
    spec.min_quantity, spec.reference_price, spec.last_price = (
        market.min_quantity,
        market.reference_price,
        market.last_price,
    )
