"""When a stop-loss or take-profit order turns into a market order."""

from __future__ import annotations

from decimal import Decimal

from orders.engine.money import require_decimal
from orders.engine.types import OrderType, Side


def fires_on_fall(*, order_type: OrderType, side: Side) -> bool:
    """A stop-loss limits a loss: a sell fires on a fall, a buy (closing a short) on a rise.
    A take-profit locks in a gain: a sell fires on a rise, a buy on a fall."""
    return (OrderType(order_type) is OrderType.STOP_LOSS) == (Side(side) is Side.SELL)


def stop_triggered(*, order_type: OrderType, side: Side, stop_price: Decimal, last_price: Decimal) -> bool:
    """True once `last_price` has reached `stop_price` in the order's direction (touching counts).

    A stop-loss limits a loss: a sell fires on a fall, a buy (closing a short) on a rise.
    A take-profit locks in a gain: a sell fires on a rise, a buy on a fall."""
    if not OrderType(order_type).is_stop:
        raise ValueError(f"{order_type} is not a stop order type")
    require_decimal(stop_price, name="stop_price")
    require_decimal(last_price, name="last_price")
    if fires_on_fall(order_type=order_type, side=side):
        return last_price <= stop_price
    return last_price >= stop_price
