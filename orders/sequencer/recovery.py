"""Rebuilding a market's book from the database: at engine start, after a takeover, and
whenever a batch failed after changing memory (the database is the truth: a batch that did
not commit left nothing there, so reloading undoes it in memory too)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from typing import Any, cast

from django.conf import settings
from django.db import connection
from django.db.models import Field

from orders.engine.book import LiveOrder
from orders.engine.market import HouseSettings, MarketEngine, MarketSpec, TradingRules
from orders.engine.settlement import FeeRates
from orders.engine.types import LIVE_STATUSES, OrderStatus, OrderType, SelfTradePrevention, Side, TimeInForce
from orders.models import Market, Order
from orders.system_accounts import fee_account_user_id, house_user_id

_LIVE_FIELDS = (
    "id",
    "user_id",
    "side",
    "type",
    "time_in_force",
    "stp",
    "price",
    "stop_price",
    "quantity",
    "filled_quantity",
    "quote_filled",
    "fee_paid",
    "locked_amount",
    "status",
    "status_reason",
    "client_order_id",
    "request_fingerprint",
    "created_at",
    "updated_at",
    "triggered_at",
)


def trading_rules() -> TradingRules:
    return TradingRules(
        rates=FeeRates(taker_bps=settings.TAKER_FEE_BPS, maker_bps=settings.MAKER_FEE_BPS),
        max_slippage_bps=settings.MAX_MARKET_SLIPPAGE_BPS,
        house=HouseSettings(
            enabled=settings.AUTO_FILL_ENABLED,
            max_notional=settings.MAX_AUTO_FILL_USD,
            slippage_percent=settings.AUTO_FILL_SLIPPAGE_PERCENT,
        ),
        house_user_id=house_user_id(),
        fee_user_id=fee_account_user_id(),
    )


def market_spec(market: Market) -> MarketSpec:
    return MarketSpec(
        id=market.pk,
        symbol=market.symbol,
        base_id=market.base_id,
        quote_id=market.quote_id,
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


def _live_rows(market_id: int) -> Iterator[tuple[Any, ...]]:
    """The market's live orders, _LIVE_FIELDS per row, in id order.

    PostgreSQL: a server-side cursor of psycopg's own, results in binary (numerics and
    timestamps decoded in C, no per-value Django converter: most of a start's CPU went to
    parsing the text of 200,000 timestamps). Other backends: the ORM."""
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
    with raw.cursor(name=f"engine_load_{market_id}_{os.getpid()}", binary=True, withhold=True) as cursor:
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


def _restore_all(engine: MarketEngine, market_id: int) -> None:
    for (
        order_id,
        user_id,
        side,
        order_type,
        time_in_force,
        stp,
        price,
        stop_price,
        quantity,
        filled_quantity,
        quote_filled,
        fee_paid,
        locked_amount,
        status,
        status_reason,
        client_order_id,
        request_fingerprint,
        created_at,
        updated_at,
        triggered_at,
    ) in _live_rows(market_id):
        engine.restore(
            LiveOrder(
                seq=order_id,
                id=order_id,
                user_id=user_id,
                market_id=market_id,
                side=_SIDES[side],
                type=_TYPES[order_type],
                time_in_force=_TIFS[time_in_force],
                stp=_STPS[stp],
                price=price,
                stop_price=stop_price,
                quantity=quantity,
                filled_quantity=filled_quantity,
                quote_filled=quote_filled,
                fee_paid=fee_paid,
                locked_amount=locked_amount,
                status=_STATUSES[status],
                status_reason=status_reason,
                client_order_id=client_order_id,
                request_fingerprint=request_fingerprint,
                created_at=created_at,
                updated_at=updated_at,
                triggered_at=triggered_at,
            )
        )
