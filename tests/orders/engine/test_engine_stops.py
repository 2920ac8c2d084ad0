"""Stop-loss and take-profit trigger table, touching included."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.compiled import compiled_in_use
from orders.engine import OrderType, Side, stop_triggered

D = Decimal
STOP = D("100")
BELOW, TOUCH, ABOVE = D("99.99999999"), D("100.00"), D("100.00000001")


@pytest.mark.parametrize(
    ("order_type", "side", "last", "fires"),
    [
        # stop-loss sell: protects a long, fires when the price falls to the stop
        (OrderType.STOP_LOSS, Side.SELL, BELOW, True),
        (OrderType.STOP_LOSS, Side.SELL, TOUCH, True),
        (OrderType.STOP_LOSS, Side.SELL, ABOVE, False),
        # stop-loss buy: protects a short, fires when the price rises to the stop
        (OrderType.STOP_LOSS, Side.BUY, BELOW, False),
        (OrderType.STOP_LOSS, Side.BUY, TOUCH, True),
        (OrderType.STOP_LOSS, Side.BUY, ABOVE, True),
        # take-profit sell: fires when the price rises to the target
        (OrderType.TAKE_PROFIT, Side.SELL, BELOW, False),
        (OrderType.TAKE_PROFIT, Side.SELL, TOUCH, True),
        (OrderType.TAKE_PROFIT, Side.SELL, ABOVE, True),
        # take-profit buy: fires when the price falls to the target
        (OrderType.TAKE_PROFIT, Side.BUY, BELOW, True),
        (OrderType.TAKE_PROFIT, Side.BUY, TOUCH, True),
        (OrderType.TAKE_PROFIT, Side.BUY, ABOVE, False),
    ],
)
def test_trigger_table(order_type: OrderType, side: Side, last: Decimal, fires: bool) -> None:
    assert stop_triggered(order_type=order_type, side=side, stop_price=STOP, last_price=last) is fires


def test_plain_strings_are_coerced_in_plain_python_and_refused_compiled() -> None:
    """The vocabulary's text where its members are declared: plain Python turns it into the
    member; compiled, the declared types are checked (core/compiled.py) and it is refused."""
    if compiled_in_use():
        with pytest.raises(TypeError):
            stop_triggered(order_type="stop_loss", side="sell", stop_price=STOP, last_price=BELOW)  # type: ignore[arg-type]
    else:
        assert stop_triggered(order_type="stop_loss", side="sell", stop_price=STOP, last_price=BELOW)  # type: ignore[arg-type]


def test_unknown_type_and_float_prices_are_refused() -> None:
    with pytest.raises(TypeError if compiled_in_use() else ValueError):
        stop_triggered(order_type="trailing", side=Side.SELL, stop_price=STOP, last_price=BELOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        stop_triggered(
            order_type=OrderType.STOP_LOSS,
            side=Side.SELL,
            stop_price=STOP,
            last_price=99.5,  # type: ignore[arg-type]
        )
