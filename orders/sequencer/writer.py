"""The batch writer: everything one batch changed, in one transaction, with a fixed number
of multi-row statements whatever the number of commands, orders, trades or makers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from orders.engine.book import LiveOrder
from orders.engine.market import Journal
from orders.models import Market, Order, OrderEvent, Trade, TradeOutbox, TradeOutboxStatus
from orders.sequencer.arrays import Row, ids_reserve, statements_pipelined, table_insert, table_update
from orders.sequencer.wallets import BatchWallets

ORDER_UPDATE_FIELDS = (
    "filled_quantity",
    "quote_filled",
    "fee_paid",
    "locked_amount",
    "status",
    "status_reason",
    "updated_at",
    "triggered_at",
    "filled_at",
    "cancelled_at",
    "closed_at",
)


ORDER_INSERT_FIELDS = (
    "user",
    "market",
    "side",
    "type",
    "time_in_force",
    "stp",
    "price",
    "stop_price",
    "quantity",
    "client_order_id",
    "request_fingerprint",
    "created_at",
    *ORDER_UPDATE_FIELDS,
)
TRADE_FIELDS = (
    "market",
    "price",
    "quantity",
    "quote_amount",
    "taker_side",
    "taker_order",
    "maker_order",
    "taker_user",
    "maker_user",
    "taker_fee",
    "maker_fee",
    "is_house",
    "reference_price",
    "executed_at",
)
OUTBOX_PENDING = TradeOutboxStatus.PENDING.value
OUTBOX_FIELDS = ("trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")


def _id(order: LiveOrder) -> int:
    if order.id is None:
        raise ValueError("orders are inserted before what refers to them")
    return order.id


def _order_update_row(order: LiveOrder) -> Row:
    """ORDER_UPDATE_FIELDS of an order."""
    return (
        order.filled_quantity,
        order.quote_filled,
        order.fee_paid,
        order.locked_amount,
        order.status.value,
        order.status_reason,
        order.updated_at,
        order.triggered_at,
        order.filled_at,
        order.cancelled_at,
        order.closed_at,
    )


def _order_insert_row(order: LiveOrder) -> Row:
    """ORDER_INSERT_FIELDS of a new order."""
    return (
        order.user_id,
        order.market_id,
        order.side.value,
        order.type.value,
        order.time_in_force.value,
        order.stp.value,
        order.price,
        order.stop_price,
        order.quantity,
        order.client_order_id,
        order.request_fingerprint,
        order.created_at,
        *_order_update_row(order),
    )


@dataclass(frozen=True, slots=True)
class Written:
    changes: list[tuple[LiveOrder, str, str | None]]  # the status changes: order, status, reason
    outbox_ids: list[int]


def batch_write(*, journal: Journal, wallets: BatchWallets, now: datetime) -> Written:
    """Write the batch in one transaction (the caller's). On PostgreSQL in three round trips
    whatever the batch holds (there were eight): the wallets that only received postings
    are locked, the new rows' ids reserved, then every write sent at once
    (statements_pipelined)."""
    if connection.vendor != "postgresql":
        return _write(journal=journal, wallets=wallets, now=now, ids=None)
    wallets.lock_pending()  # a raw query: it reads its columns before its rows, so not in a pipeline
    with statements_pipelined():
        reserved = ids_reserve(
            [(Order, len(journal.new_orders)), (Trade, len(journal.trades)), (TradeOutbox, len(journal.trades))]
        )
        return _write(journal=journal, wallets=wallets, now=now, ids=reserved())


def _write(*, journal: Journal, wallets: BatchWallets, now: datetime, ids: list[list[int]] | None) -> Written:
    order_ids, trade_ids, outbox_ids = ids or (None, None, None)
    new_ids = table_insert(
        Order, fields=ORDER_INSERT_FIELDS, rows=[_order_insert_row(o) for o in journal.new_orders], ids=order_ids
    )
    for order, new_id in zip(journal.new_orders, new_ids, strict=True):
        order.id = new_id
    created = {id(order) for order in journal.new_orders}
    existing = [order for key, order in journal.touched.items() if key not in created]
    table_update(
        Order, fields=ORDER_UPDATE_FIELDS, rows=[(_id(order), *_order_update_row(order)) for order in existing]
    )

    outbox: list[int] = []
    if journal.trades:
        inserted = table_insert(
            Trade,
            fields=TRADE_FIELDS,
            rows=[
                (
                    trade.taker.market_id,
                    trade.price,
                    trade.quantity,
                    trade.settled.notional,
                    trade.taker.side.value,
                    _id(trade.taker),
                    None if trade.maker is None else trade.maker.id,
                    trade.taker.user_id,
                    trade.maker_user_id,
                    trade.settled.taker_fee,
                    trade.settled.maker_fee,
                    trade.maker is None,
                    trade.reference_price,
                    trade.executed_at,
                )
                for trade in journal.trades
            ],
            ids=trade_ids,
        )
        for trade, trade_id in zip(journal.trades, inserted, strict=True):
            trade.id = trade_id
        outbox = table_insert(
            TradeOutbox,
            fields=OUTBOX_FIELDS,
            rows=[
                (trade_id, OUTBOX_PENDING, 0, "", trade.taker.correlation_id or "", now, None)
                for trade, trade_id in zip(journal.trades, inserted, strict=True)
            ],
            ids=outbox_ids,
        )
    changes: list[tuple[LiveOrder, str, str | None]] = []
    for order in [*journal.new_orders, *existing]:
        changes += [(order, status.value, reason) for status, reason in order.pending_events]
    table_insert(
        OrderEvent,
        fields=("order", "status", "reason", "at"),
        rows=[(_id(order), status, reason, now) for order, status, reason in changes],
        returning=False,
    )
    wallets.flush()
    if journal.markets:
        table_update(
            Market,
            fields=_MARKET_FIELDS,
            rows=[(spec.id, spec.last_price, spec.reference_price) for spec in journal.markets.values()],
        )
    return Written(changes=changes, outbox_ids=outbox)


_MARKET_FIELDS = ("last_price", "reference_price")
