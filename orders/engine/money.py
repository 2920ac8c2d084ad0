"""Decimal helpers for amounts, prices and quantities (8 decimal places, never float).

Every operation here names MONEY_CONTEXT itself (`MONEY_CONTEXT.multiply`, `quantize(...,
context=...)`) instead of entering it: the engine calls these a few dozen times per
command, and switching the thread's context each time was 4% of a batch's CPU
(docs/performance.md). `exact_arithmetic` is for blocks of plain operators; it switches
only when the thread's context is not already an exact one."""

from __future__ import annotations

import decimal
from contextlib import AbstractContextManager, nullcontext
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.money import AMOUNT_PLACES, MONEY_CONTEXT
from core.money import QUANTUM as AMOUNT_QUANTUM

__all__ = ["AMOUNT_PLACES", "AMOUNT_QUANTUM", "MONEY_CONTEXT", "ONE", "ZERO", "exact_arithmetic"]

ZERO = Decimal(0)
ONE = Decimal(1)
_ALREADY_EXACT = nullcontext()
# Context.traps read through getattr: typeshed says dict, it is a decimal SignalDict, and
# compiled code (core/compiled.py) checks the declared type.
_TRAPS = tuple(signal for signal, trapped in getattr(MONEY_CONTEXT, "traps").items() if trapped)  # noqa: B009


_PREC, _ROUNDING, _EMAX, _EMIN, _CLAMP = (
    MONEY_CONTEXT.prec,
    MONEY_CONTEXT.rounding,
    MONEY_CONTEXT.Emax,
    MONEY_CONTEXT.Emin,
    MONEY_CONTEXT.clamp,
)


def _is_exact(context: decimal.Context) -> bool:
    """`context` computes as MONEY_CONTEXT does (flags aside, which nothing here reads).
    Written out (no generator): it runs a few times per command."""
    if (
        context.prec != _PREC
        or context.rounding != _ROUNDING
        or context.Emax != _EMAX
        or context.Emin != _EMIN
        or context.clamp != _CLAMP
    ):
        return False
    traps = getattr(context, "traps")  # noqa: B009  (as _TRAPS)
    for signal in _TRAPS:  # noqa: SIM110  (all() of a generator costs twice as much here)
        if not traps[signal]:
            return False
    return True


def exact_arithmetic() -> AbstractContextManager[object]:
    """Run a block in MONEY_CONTEXT, whatever the thread's context is (most often it is
    one already: core.money.money_context_install)."""
    if _is_exact(decimal.getcontext()):
        return _ALREADY_EXACT
    return decimal.localcontext(MONEY_CONTEXT)


def require_decimal(value: object, *, name: str) -> Decimal:
    """Return `value` if it is a finite Decimal; floats and other types are refused."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return value


# The market's fee rates are a few ints, met twice per fill: their Decimals are kept.
_BPS_OF_INT: dict[int, Decimal] = {}


def require_bps(value: object, *, name: str) -> Decimal:
    """Return basis points (an int or a Decimal, not a float or bool) as a non-negative Decimal."""
    if type(value) is int:  # exactly int: a bool (equal to 0 or 1) never reaches the cache
        known = _BPS_OF_INT.get(value)
        if known is not None:
            return known
        if value >= 0 and len(_BPS_OF_INT) < 1_000:
            known = _BPS_OF_INT[value] = Decimal(value)
            return known
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"{name} must be an int or a Decimal, got {type(value).__name__}")
    bps = Decimal(value)
    if not bps.is_finite() or bps < 0:
        raise ValueError(f"{name} must be a finite, non-negative number, got {value}")
    return bps


def quantize_down(value: Decimal) -> Decimal:
    """Round towards negative infinity to AMOUNT_PLACES decimal places."""
    return value.quantize(AMOUNT_QUANTUM, rounding=ROUND_FLOOR, context=MONEY_CONTEXT)


def quantize_up(value: Decimal) -> Decimal:
    """Round towards positive infinity to AMOUNT_PLACES decimal places."""
    return value.quantize(AMOUNT_QUANTUM, rounding=ROUND_CEILING, context=MONEY_CONTEXT)


def average_price(*, quote: Decimal, quantity: Decimal) -> Decimal | None:
    """What the fills of an order paid (or got) per unit: `quote` over `quantity`, to
    AMOUNT_PLACES, half even; None before any fill. The engine's answers and the stored
    order's body both say it."""
    if not quantity:
        return None
    return MONEY_CONTEXT.quantize(MONEY_CONTEXT.divide(quote, quantity), AMOUNT_QUANTUM)


def notional_of(*, price: Decimal, quantity: Decimal) -> Decimal:
    """price * quantity rounded down to 8 dp (what a fill moves in the quote asset)."""
    return quantize_down(MONEY_CONTEXT.multiply(price, quantity))


def fills_quote_exact(*, price_tick: Decimal, quantity_step: Decimal) -> bool:
    """Whether every fill of a market with these steps moves an exact quote amount: its
    price and quantity are multiples of tick and step, so its notional is a multiple of
    tick x step, exact at 8 dp when that is (else notional_of cuts it: a fill of 1e-8 at
    1e-8 moves 0)."""
    unit = MONEY_CONTEXT.multiply(price_tick, quantity_step)
    return unit == unit.quantize(AMOUNT_QUANTUM, rounding=ROUND_FLOOR, context=MONEY_CONTEXT)


def _floor_multiple(value: Decimal, unit: Decimal) -> Decimal:
    if unit <= 0:
        raise ValueError(f"unit must be positive, got {unit}")
    # divmod truncates towards zero; step down once more for negative values.
    quotient, remainder = MONEY_CONTEXT.divmod(value, unit)
    if remainder < 0:
        quotient = MONEY_CONTEXT.subtract(quotient, ONE)
    return MONEY_CONTEXT.multiply(quotient, unit)


def _ceil_multiple(value: Decimal, unit: Decimal) -> Decimal:
    return MONEY_CONTEXT.minus(_floor_multiple(MONEY_CONTEXT.minus(value), unit))


def floor_to_step(value: Decimal, *, step: Decimal) -> Decimal:
    """Largest multiple of `step` that is <= `value`."""
    return _floor_multiple(value, step)


def floor_to_tick(value: Decimal, *, tick: Decimal) -> Decimal:
    """Largest multiple of `tick` that is <= `value`."""
    return _floor_multiple(value, tick)


def ceil_to_tick(value: Decimal, *, tick: Decimal) -> Decimal:
    """Smallest multiple of `tick` that is >= `value`."""
    return _ceil_multiple(value, tick)


def is_multiple_of(value: Decimal, *, unit: Decimal) -> bool:
    """True when `value` lies exactly on the `unit` grid."""
    return _floor_multiple(value, unit) == value


def affordable_quantity(*, budget: Decimal, price: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of `step` whose cost at `price` stays within `budget`.

    Equals floor_to_step(budget / price) computed without the rounding of a Decimal
    division, which could otherwise land exactly on the next step and overspend."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    if budget <= 0:
        return ZERO
    return MONEY_CONTEXT.multiply(MONEY_CONTEXT.divide_int(budget, MONEY_CONTEXT.multiply(price, step)), step)
