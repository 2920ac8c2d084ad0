"""The batch writer: everything one batch changed, in one transaction, with a fixed number
of multi-row statements whatever the number of commands, orders, trades or makers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.db import rows_insert, rows_update
from orders.engine.book import LiveOrder
from orders.engine.market import Journal, MarketSpec
from orders.models import Market, Order, OrderEvent, Trade, TradeOutbox
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
OUTBOX_FIELDS = ("trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")


def _id(order: LiveOrder) -> int:
    if order.id is None:
        raise ValueError("orders are inserted before what refers to them")
    return order.id


def _order_row(order: LiveOrder) -> Order:
    return Order(
        id=order.id,
        user_id=order.user_id,
        market_id=order.market_id,
        side=order.side.value,
        type=order.type.value,
        time_in_force=order.time_in_force.value,
        stp=order.stp.value,
        price=order.price,
        stop_price=order.stop_price,
        quantity=order.quantity,
        filled_quantity=order.filled_quantity,
        quote_filled=order.quote_filled,
        fee_paid=order.fee_paid,
        locked_amount=order.locked_amount,
        status=order.status.value,
        status_reason=order.status_reason,
        client_order_id=order.client_order_id,
        request_fingerprint=order.request_fingerprint,
        created_at=order.created_at,
        updated_at=order.updated_at,
        triggered_at=order.triggered_at,
        filled_at=order.filled_at,
        cancelled_at=order.cancelled_at,
        closed_at=order.closed_at,
    )


@dataclass(frozen=True, slots=True)
class Written:
    changes: list[tuple[LiveOrder, str, str | None]]  # the status changes: order, status, reason
    outbox_ids: list[int]


def batch_write(*, journal: Journal, wallets: BatchWallets, now: datetime) -> Written:
    """Write the batch in one transaction (the caller's)."""
    new_ids = rows_insert(objects=[_order_row(order) for order in journal.new_orders], fields=ORDER_INSERT_FIELDS)
    for order, new_id in zip(journal.new_orders, new_ids, strict=True):
        order.id = new_id
    created = {id(order) for order in journal.new_orders}
    existing = [order for key, order in journal.touched.items() if key not in created]
    if existing:
        rows_update(objects=[_order_row(order) for order in existing], fields=ORDER_UPDATE_FIELDS)

    if journal.trades:
        trade_ids = rows_insert(
            objects=[
                Trade(
                    market_id=trade.taker.market_id,
                    price=trade.price,
                    quantity=trade.quantity,
                    quote_amount=trade.settled.notional,
                    taker_side=trade.taker.side.value,
                    taker_order_id=_id(trade.taker),
                    maker_order_id=None if trade.maker is None else trade.maker.id,
                    taker_user_id=trade.taker.user_id,
                    maker_user_id=trade.maker_user_id,
                    taker_fee=trade.settled.taker_fee,
                    maker_fee=trade.settled.maker_fee,
                    is_house=trade.maker is None,
                    reference_price=trade.reference_price,
                    executed_at=trade.executed_at,
                )
                for trade in journal.trades
            ],
            fields=TRADE_FIELDS,
        )
        for trade, trade_id in zip(journal.trades, trade_ids, strict=True):
            trade.id = trade_id
        outbox_ids = rows_insert(
            objects=[
                TradeOutbox(trade_id=trade_id, correlation_id=trade.taker.correlation_id, created_at=now)
                for trade, trade_id in zip(journal.trades, trade_ids, strict=True)
            ],
            fields=OUTBOX_FIELDS,
        )
    else:
        outbox_ids = []
    changes: list[tuple[LiveOrder, str, str | None]] = []
    for order in [*journal.new_orders, *existing]:
        changes += [(order, status.value, reason) for status, reason in order.pending_events]
    rows_insert(
        objects=[
            OrderEvent(order_id=_id(order), status=status, reason=reason, at=now) for order, status, reason in changes
        ],
        fields=("order", "status", "reason", "at"),
    )
    wallets.flush()
    if journal.markets:
        rows_update(objects=[_market_row(spec) for spec in journal.markets.values()], fields=_MARKET_FIELDS)
    return Written(changes=changes, outbox_ids=outbox_ids)


_MARKET_FIELDS = ("last_price", "reference_price")


def _market_row(spec: MarketSpec) -> Market:
    return Market(id=spec.id, last_price=spec.last_price, reference_price=spec.reference_price)
