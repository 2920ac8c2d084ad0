"""Parsing and rounding money values. Nothing is silently rounded on input.

`parse_amount` is the one parser of every amount, price and quantity a client sends (API
bodies, page forms, staff endpoints, query parameters): text is ASCII digits with an
optional fraction, nothing else. Python's Decimal alone would also read "\u0661" (Arabic-Indic
one), "\uff11" (fullwidth one), "1_0" (ten), " 1", "1e3" and "NaN"; a client or a second
parser that disagrees with the server about what a string means is a bug waiting to
happen, so the grammar is fixed here and everything else is refused."""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from core.fields import AMOUNT_MAX_DIGITS, AMOUNT_PLACES

QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)
MAX_AMOUNT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_PLACES) - QUANTUM
# The text form of an amount. re.ASCII: \d would match any Unicode digit, so spell it out.
AMOUNT_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
AMOUNT_TEXT_MAX_LENGTH = 64


def parse_decimal(value: object) -> Decimal | None:
    """A finite, non-negative Decimal from ASCII decimal text (`[0-9]+(.[0-9]+)?`) or a JSON
    number (int or float, not bool), or None. No precision limit: see parse_amount."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > AMOUNT_TEXT_MAX_LENGTH or not AMOUNT_TEXT.fullmatch(value):
            return None
        return Decimal(value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float | Decimal):
        try:
            # Floats go through repr so 0.1 stays 0.1, not its binary expansion.
            number = Decimal(repr(value)) if isinstance(value, float) else value
        except (InvalidOperation, ValueError):
            return None
        return number if number.is_finite() else None
    return None


def parse_amount(value: object) -> Decimal | None:
    """A finite Decimal with at most 8 decimal places that fits the column, or None.
    Negative JSON numbers are returned as such (the callers refuse them with their own
    message); text never carries a sign."""
    amount = parse_decimal(value)
    if amount is None or abs(amount) > MAX_AMOUNT:
        return None
    if amount != amount.quantize(QUANTUM, rounding=ROUND_DOWN):
        return None
    return amount


def format_amount(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount.quantize(QUANTUM):f}"
