"""When a stop-loss or take-profit order turns into a market order."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from orders.engine.money import require_decimal
from orders.engine.types import Side


class StopOrderType(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"


def stop_triggered(*, order_type: StopOrderType, side: Side, stop_price: Decimal, last_price: Decimal) -> bool:
    """True once `last_price` has reached `stop_price` in the order's direction (touching counts).

    A stop-loss limits a loss: a sell fires on a fall, a buy (closing a short) on a rise.
    A take-profit locks in a gain: a sell fires on a rise, a buy on a fall."""
    order_type = StopOrderType(order_type)
    side = Side(side)
    require_decimal(stop_price, name="stop_price")
    require_decimal(last_price, name="last_price")
    fires_on_fall = (order_type is StopOrderType.STOP_LOSS) == (side is Side.SELL)
    return last_price <= stop_price if fires_on_fall else last_price >= stop_price
