"""Parsing and rounding money values. Nothing is silently rounded on input."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation

from core.fields import AMOUNT_MAX_DIGITS, AMOUNT_PLACES

QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)
MAX_AMOUNT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_PLACES) - QUANTUM


def parse_amount(value: object) -> Decimal | None:
    """A finite Decimal with at most 8 decimal places that fits the column, or None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    try:
        # Floats go through repr so 0.1 stays 0.1, not its binary expansion.
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or abs(amount) > MAX_AMOUNT:
        return None
    if amount != amount.quantize(QUANTUM, rounding=ROUND_DOWN):
        return None
    return amount


def format_amount(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount.quantize(QUANTUM):f}"
