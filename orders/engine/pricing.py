"""Price limits derived from the market's reference price (slippage guard and house price),
and the house's cap in the market's quote asset."""

from __future__ import annotations

from decimal import Decimal

from orders.engine.money import (
    AMOUNT_QUANTUM,
    ONE,
    affordable_quantity,
    ceil_to_tick,
    exact_arithmetic,
    floor_to_tick,
    require_bps,
)
from orders.engine.types import Side

_BPS_PER_UNIT = Decimal(10_000)
_PERCENT_PER_UNIT = Decimal(100)


def slippage_limit(*, side: Side, reference_price: Decimal, max_slippage_bps: int | Decimal) -> Decimal:
    """Worst price a market order may fill at: the highest for a buy, the lowest for a sell.

    Exact (not rounded to the tick): book prices lie on the tick grid, so comparing against
    the exact bound admits exactly the ticks within it."""
    with exact_arithmetic():
        offset = require_bps(max_slippage_bps, name="max_slippage_bps") / _BPS_PER_UNIT
        if side is Side.BUY:
            return reference_price * (ONE + offset)
        return reference_price * (ONE - offset)


def house_price(*, side: Side, reference_price: Decimal, slippage_percent: Decimal, price_tick: Decimal) -> Decimal:
    """Price at which the house fills a market taker of `side`.

    Rounded against the taker (up for a buy, down for a sell) so the house never
    fills at better than its advertised spread."""
    with exact_arithmetic():
        offset = slippage_percent / _PERCENT_PER_UNIT
        if side is Side.BUY:
            return ceil_to_tick(reference_price * (ONE + offset), tick=price_tick)
        return floor_to_tick(reference_price * (ONE - offset), tick=price_tick)


def reference_price_move_allowed(
    *, price: Decimal, anchors: tuple[Decimal | None, ...], max_move_percent: Decimal
) -> bool:
    """Whether staff may set the reference price to `price` in one step: within
    `max_move_percent` of any anchor (the reference price now, the last trade price), as a
    ratio either way (at 50, from 2000: 1,333.34 up to 3,000). The reference prices the
    house's fills at once: 60.00 typed for 60000.00 sold the house's stock at a thousandth
    of the book's price and fired the stops it crossed. No anchor: anything."""
    present = [anchor for anchor in anchors if anchor is not None and anchor > 0]
    with exact_arithmetic():
        ratio = ONE + max_move_percent / _PERCENT_PER_UNIT
        return not present or any(price <= anchor * ratio and price * ratio >= anchor for anchor in present)


def within_limit(*, side: Side, price: Decimal, limit: Decimal) -> bool:
    """True when a taker of `side` accepts `price` given its limit (or guard) price."""
    return price <= limit if side is Side.BUY else price >= limit


def house_max_notional(*, max_usd: Decimal, quote_usd_rate: Decimal | None) -> Decimal | None:
    """The most quote a house fill may move (its notional), for a cap of `max_usd` US dollars
    (MAX_AUTO_FILL_USD) on a market whose quote asset is worth `quote_usd_rate` dollars
    (orders.engine.rates): `max_usd` itself for a USD-pegged quote (rate 1), else the
    largest amount of 8 decimal places worth at most `max_usd` (rounded down, never over
    the cap). None when the quote asset has no dollar rate (None, or not positive): the
    house does not fill there."""
    if quote_usd_rate is None or quote_usd_rate <= 0:
        return None
    if quote_usd_rate == ONE:
        return max_usd
    return affordable_quantity(budget=max_usd, price=quote_usd_rate, step=AMOUNT_QUANTUM)
