"""The contract's order body, built by the engine from what it holds in memory right after
the batch was written: the same JSON as reading the order back (orders.api.serializers.
order_output, checked by tests/orders/test_order_output.py and the sequencer tests)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from core.api.fields import moment_text
from core.money import MONEY_CONTEXT, QUANTUM, format_amount
from orders.engine.book import LiveOrder
from orders.engine.market import TradeRecord


def order_body(
    order: LiveOrder,
    *,
    symbol: str,
    trades: list[TradeRecord],
    events: list[tuple[str, str | None]],
    at: datetime,
    at_text: str | None = None,
) -> dict[str, Any]:
    """`trades`: the batch's trades this order took part in; `events`: its status changes
    (a new order's whole history: every one of them happened in this batch, at `at`);
    `at_text`: moment_text(at) when the caller has it (one look-up of the current time zone
    per batch rather than per answer: it goes through asgiref's Local, ~10 µs)."""
    average: Decimal | None = None
    if order.filled_quantity:
        average = MONEY_CONTEXT.quantize(MONEY_CONTEXT.divide(order.quote_filled, order.filled_quantity), QUANTUM)
    fills = []
    for trade in sorted(trades, key=lambda t: t.id or 0):
        as_taker = trade.taker is order
        fills.append(
            {
                "trade_id": str(trade.id),
                "price": format_amount(trade.price),
                "quantity": format_amount(trade.quantity),
                "fee": format_amount(trade.settled.taker_fee if as_taker else trade.settled.maker_fee),
                "liquidity": "taker" if as_taker else "maker",
                "counterparty": "house" if as_taker and trade.maker is None else "book",
            }
        )
    moment = moment_text(at) if at_text is None else at_text

    def when(value: datetime | None) -> str | None:
        # Most of an order's moments are the batch's own (`at`): formatted once.
        return moment if value is at else moment_text(value)

    return {
        "id": str(order.id),
        "client_order_id": order.client_order_id,
        "market": symbol,
        "side": order.side.value,
        "type": order.type.value,
        "time_in_force": order.time_in_force.value,
        "stp": order.stp.value,
        "price": format_amount(order.price),
        "stop_price": format_amount(order.stop_price),
        "quantity": format_amount(order.quantity),
        "filled_quantity": format_amount(order.filled_quantity),
        "remaining_quantity": format_amount(order.remaining),
        "average_price": None if average is None else f"{average:f}",
        "fee_paid": format_amount(order.fee_paid),
        "status": order.status.value,
        "status_reason": order.status_reason,
        "created_at": when(order.created_at),
        "updated_at": when(order.updated_at),
        "filled_at": when(order.filled_at),
        "cancelled_at": when(order.cancelled_at),
        "fills": fills,
        "events": [{"status": status, "reason": reason, "at": moment} for status, reason in events],
    }
