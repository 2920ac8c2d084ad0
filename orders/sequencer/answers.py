"""The contract's order body, built by the engine from what it holds in memory right after
the batch was written: the same JSON as reading the order back (orders.api.serializers.
order_output, checked by tests/orders/api/test_order_output.py and the sequencer tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from core.api.fields import moment_text
from core.money import format_amount
from orders.engine.book import LiveOrder
from orders.engine.market import TradeRecord
from orders.engine.money import average_price
from orders.engine.types import Counterparty, Liquidity

# The vocabulary's texts, read once: a member looked up on its enum costs more than a fill's body.
TAKER: Final = Liquidity.TAKER.value
MAKER: Final = Liquidity.MAKER.value
BOOK: Final = Counterparty.BOOK.value
HOUSE: Final = Counterparty.HOUSE.value


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
    moment = (moment_text(at) if at_text is None else at_text) or ""
    fills = []
    for trade in sorted(trades, key=lambda t: t.id or 0):
        as_taker = trade.taker is order
        fills.append(
            {
                "trade_id": str(trade.id),
                "price": format_amount(trade.price),
                "quantity": format_amount(trade.quantity),
                "fee": format_amount(trade.settled.taker_fee if as_taker else trade.settled.maker_fee),
                "liquidity": TAKER if as_taker else MAKER,
                "counterparty": HOUSE if as_taker and trade.maker is None else BOOK,
            }
        )
    return _body(
        order,
        symbol=symbol,
        fills=fills,
        events=[{"status": status, "reason": reason, "at": moment} for status, reason in events],
        at=at,
        at_text=moment,
    )


@dataclass(frozen=True, slots=True)
class StoredFill:
    """A stored trade of an order, as its body shows it (orders.selectors.orders.order_fills)."""

    trade_id: int
    price: Decimal
    quantity: Decimal
    fee: Decimal
    liquidity: str  # a Liquidity's value
    counterparty: str  # a Counterparty's value


@dataclass(slots=True)
class StoredHistory:
    """An order's stored fills and events (status, reason, at), oldest first."""

    fills: list[StoredFill] = field(default_factory=list)
    events: list[tuple[str, str | None, datetime]] = field(default_factory=list)


def order_body_stored(
    order: LiveOrder, *, symbol: str, history: StoredHistory, at: datetime, at_text: str
) -> dict[str, Any]:
    """The body of an order whose whole history is stored (read back in the batch's
    transaction after its write): its columns from memory, its fills and events as
    stored. What orders.api.serializers.order_output gives for the same order, without
    reading the order's row and its relations through the ORM."""

    def when(value: datetime) -> str | None:
        return at_text if value == at else moment_text(value)

    return _body(
        order,
        symbol=symbol,
        fills=[
            {
                "trade_id": str(fill.trade_id),
                "price": format_amount(fill.price),
                "quantity": format_amount(fill.quantity),
                "fee": format_amount(fill.fee),
                "liquidity": fill.liquidity,
                "counterparty": fill.counterparty,
            }
            for fill in history.fills
        ],
        events=[{"status": status, "reason": reason, "at": when(moment)} for status, reason, moment in history.events],
        at=at,
        at_text=at_text,
    )


def _body(
    order: LiveOrder,
    *,
    symbol: str,
    fills: list[dict[str, Any]],
    events: list[dict[str, Any]],
    at: datetime,
    at_text: str,
) -> dict[str, Any]:
    average = average_price(quote=order.quote_filled, quantity=order.filled_quantity)

    def when(value: datetime | None) -> str | None:
        # Most of an order's moments are the batch's own (`at`): formatted once.
        return at_text if value is at else moment_text(value)

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
        "events": events,
    }
