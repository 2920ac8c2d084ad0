"""Money precision, context, parsing and formatting, defined once for the whole platform.

Pure Python (no Django): the matching engine uses the same constants and context.

Amounts, prices and quantities are Decimals with 8 decimal places in columns of 30 digits.
Python's default context has 28 digits, so a 30-digit amount could not even be quantized
and a sum near the limit would be rounded silently. MONEY_CONTEXT has room for a product
of two column values (60 digits) and traps instead of rounding where it matters; it is
the default context of every thread of the platform (money_context_install).

`parse_amount` is the one parser of every amount, price and quantity a client sends (API
bodies, page forms, staff endpoints, query parameters): text is ASCII digits with an
optional fraction, nothing else. Python's Decimal alone would also read "\u0661" (Arabic-Indic
one), "\uff11" (fullwidth one), "1_0" (ten), " 1", "1e3" and "NaN"; a client or a second
parser that disagrees with the server about what a string means is a bug waiting to
happen, so the grammar is fixed here and everything else is refused."""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, DivisionByZero, InvalidOperation, Overflow

AMOUNT_PLACES = 8
AMOUNT_MAX_DIGITS = 30
QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)

# 80 digits: products of two 30-digit values (60 digits) and integer divisions of them
# stay exact; nothing a column can hold is ever rounded by +, -, * or //.
MONEY_CONTEXT = decimal.Context(
    prec=80,
    rounding=ROUND_HALF_EVEN,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
# The largest amount a column holds: 22 integer digits, 8 decimals (computed in
# MONEY_CONTEXT: the default context would round it up to 10**22).
MAX_AMOUNT = MONEY_CONTEXT.subtract(MONEY_CONTEXT.power(10, AMOUNT_MAX_DIGITS - AMOUNT_PLACES), QUANTUM)
ZERO = Decimal(0)
# The text form of an amount. re.ASCII: \d would match any Unicode digit, so spell it out.
AMOUNT_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
# A number in exponent form ("1e25", "1E-5": what an HTML number field and JavaScript's
# String() write for large and small numbers): refused as text, and told so.
EXPONENT_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+", re.ASCII)
EXPONENT_REFUSAL = 'Write it in plain digits, such as "1.5" or "0.00001": no exponent ("1e25").'
AMOUNT_TEXT_MAX_LENGTH = 64


def money_context_install() -> None:
    """Make MONEY_CONTEXT the context of this thread and of every thread started later."""
    decimal.DefaultContext.prec = MONEY_CONTEXT.prec
    decimal.DefaultContext.rounding = MONEY_CONTEXT.rounding
    decimal.DefaultContext.Emax = MONEY_CONTEXT.Emax
    decimal.DefaultContext.Emin = MONEY_CONTEXT.Emin
    decimal.DefaultContext.traps = dict(getattr(MONEY_CONTEXT, "traps"))  # noqa: B009  (a SignalDict: core/compiled.py)
    decimal.setcontext(MONEY_CONTEXT.copy())


@contextmanager
def exact_arithmetic() -> Iterator[None]:
    """Run a block in MONEY_CONTEXT, whatever the thread's context is."""
    with decimal.localcontext(MONEY_CONTEXT):
        yield


def parse_decimal(value: object) -> Decimal | None:
    """A finite, non-negative Decimal from ASCII decimal text (`[0-9]+(.[0-9]+)?`) or a JSON
    number (int or float, not bool), or None. No precision limit: see parse_amount.

    No context is entered: constructing a Decimal from text, an int or a float's repr is
    exact whatever the context (it runs for every amount of every order)."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            if len(value) > AMOUNT_TEXT_MAX_LENGTH or not AMOUNT_TEXT.fullmatch(value):
                return None
            return Decimal(value)
        if isinstance(value, int):
            return Decimal(value)
        if isinstance(value, float | Decimal):
            # Floats go through repr so 0.1 stays 0.1, not its binary expansion.
            number = Decimal(repr(value)) if isinstance(value, float) else value
            return number if number.is_finite() else None
    except (InvalidOperation, ValueError):
        return None
    return None


def parse_amount(value: object) -> Decimal | None:
    """A finite Decimal with at most 8 decimal places that fits the column, or None.
    Negative JSON numbers are returned as such (the callers refuse them with their own
    message); text never carries a sign. MONEY_CONTEXT is named in the operations rather
    than entered (comparisons use no context)."""
    amount = parse_decimal(value)
    if amount is None:
        return None
    try:
        if MONEY_CONTEXT.abs(amount) > MAX_AMOUNT or amount != amount.quantize(
            QUANTUM, rounding=ROUND_DOWN, context=MONEY_CONTEXT
        ):
            return None
    except InvalidOperation:
        return None
    return amount


def amount_refusal(value: object) -> str:
    """Why parse_amount refuses `value`, as a field message: what is wrong with it (not a
    number, too large for a column, too many decimals), so that the caller is not told
    "8 decimal places" about an amount that has too many digits before the point."""
    amount = parse_decimal(value)
    if amount is None:
        if isinstance(value, str) and EXPONENT_TEXT.fullmatch(value):
            return EXPONENT_REFUSAL
        return 'Must be a positive decimal number, such as "1.5".'
    if MONEY_CONTEXT.abs(amount) > MAX_AMOUNT:
        return f"Too large: at most {AMOUNT_MAX_DIGITS - AMOUNT_PLACES} digits before the decimal point."
    return f"At most {AMOUNT_PLACES} decimal places."


def format_amount(amount: object) -> str | None:
    """An amount as every answer writes it: 8 decimals, never an exponent; what DRF's
    DecimalField(30, 8) writes, a non-Decimal (an order built in memory holds the int 0)
    read from its text as DRF does. MONEY_CONTEXT is passed rather than entered: this runs
    about ten times per order answer."""
    if amount is None:
        return None
    if isinstance(amount, Decimal):
        value = amount
    elif type(amount) is int:  # exact either way; the text's round trip cost more than the rest
        value = Decimal(amount)
    else:
        value = Decimal(str(amount).strip())
    return f"{MONEY_CONTEXT.quantize(value, QUANTUM):f}"
