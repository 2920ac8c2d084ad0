"""Money columns, set once for the whole platform.

PostgreSQL stores them as NUMERIC(30, 8), exactly. SQLite has no exact decimal type
(NUMERIC affinity turns "2000.00000001" into a floating-point REAL, exact only to about
15 significant digits), so there a MoneyField is TEXT in a fixed-width form whose
byte order is the numeric order: comparisons, ORDER BY, MIN/MAX and the CHECK
constraints keep working in SQL, and every stored digit comes back exactly. Sums in SQL
on SQLite are still floating point; code that needs them exact sums in Python
(core.money_sums)."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

from django.db import models

from core.money import AMOUNT_MAX_DIGITS, AMOUNT_PLACES, MAX_AMOUNT, QUANTUM, ZERO, exact_arithmetic

__all__ = [
    "AMOUNT_MAX_DIGITS",
    "AMOUNT_PLACES",
    "SUM_MAX_DIGITS",
    "ZERO",
    "MoneyField",
    "MoneySumEquals",
    "sqlite_money_decode",
    "sqlite_money_encode",
]

_INTEGER_DIGITS = AMOUNT_MAX_DIGITS - AMOUNT_PLACES
# Running sums the ledger does not bound, 44 integer digits: an order's over its fills
# (quote filled, fees paid: at most its quantity x its prices, a product of two column
# values; a resting sell's buyers can get their money back and buy from it again), and a
# revenue stream's totals (every currency's events added as they are: USDT and ETH fees of
# one stream). On SQLite their text is an amount's fixed width up to 10**22 and longer past
# it: SQL compares them with 0 only (their CHECKs), which holds either way.
SUM_MAX_DIGITS = 2 * _INTEGER_DIGITS + AMOUNT_PLACES
_WIDTH = AMOUNT_MAX_DIGITS + 1  # digits and the point
_OFFSET = MAX_AMOUNT + QUANTUM
_FLOAT_DIGITS = decimal.Context(prec=15)  # 10**22: negatives are stored as "-" + (10**22 - |value|)


def sqlite_money_encode(value: Decimal) -> str:
    """Fixed width, zero-padded; "-" sorts before every digit, and a negative is stored as
    its complement to 10**22 so that its digits sort in reverse."""
    with exact_arithmetic():
        quantized = value.quantize(QUANTUM)
        if quantized < 0:
            return "-" + f"{_OFFSET + quantized:f}".zfill(_WIDTH)
        return f"{quantized:f}".zfill(_WIDTH)


def sqlite_money_decode(value: object) -> Decimal:
    """What SQLite gives back: the fixed-width text, or a number (an aggregate, or a row
    written before the column was text)."""
    with exact_arithmetic():
        if isinstance(value, str):
            if value.startswith("-") and len(value) == _WIDTH + 1:
                return (Decimal(value[1:]) - _OFFSET).quantize(QUANTUM)
            return Decimal(value).quantize(QUANTUM)
        if isinstance(value, float):
            # A floating-point SUM: its 15 significant digits, as Django reads SQLite decimals.
            return _FLOAT_DIGITS.create_decimal_from_float(value).quantize(QUANTUM)
        return Decimal(value)  # type: ignore[arg-type]


SQLITE_MONEY_FUNCTION = "money_text"


def _sqlite_money_text(value: object) -> str | None:
    return None if value is None else sqlite_money_encode(sqlite_money_decode(value))


def sqlite_money_functions_register(sender: Any, connection: Any, **kwargs: Any) -> None:
    """On each new SQLite connection (connection_created): the function that turns a
    computed amount back into the column's form."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQLITE_MONEY_FUNCTION, 1, _sqlite_money_text, deterministic=True)


class MoneyField(models.DecimalField):
    """Amounts, prices and quantities: Decimal with 8 decimal places (one satoshi), at most
    30 digits. Exact on every backend (text on SQLite, see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", AMOUNT_MAX_DIGITS)
        kwargs.setdefault("decimal_places", AMOUNT_PLACES)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "core.fields.MoneyField", args, kwargs

    def get_internal_type(self) -> str:
        # Not "DecimalField": SQLite's converter of that type reads floats only.
        return "MoneyField"

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return "text"
        return connection.data_types["DecimalField"] % self.db_type_parameters(connection)

    def cast_db_type(self, connection: Any) -> str | None:
        return self.db_type(connection)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if connection.vendor != "sqlite":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        if value is None or hasattr(value, "as_sql"):
            return value
        return sqlite_money_encode(value)

    def get_placeholder(self, value: Any, compiler: Any, connection: Any) -> str:
        # SQL arithmetic on SQLite (an UPDATE ... SET balance = balance + 1) yields a REAL:
        # stored back in the fixed-width form, or comparisons and constraints would break.
        if connection.vendor == "sqlite" and hasattr(value, "as_sql"):
            return f"{SQLITE_MONEY_FUNCTION}(%s)"
        return "%s"

    def to_python(self, value: Any) -> Any:
        if isinstance(value, Decimal):
            return value
        with exact_arithmetic():
            return super().to_python(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Decimal | None:
        if value is None:
            return None
        if connection.vendor == "sqlite":
            return sqlite_money_decode(value)
        return value if isinstance(value, Decimal) else Decimal(value)


# The fixed-width text in whole-number groups that fit SQLite's 64-bit integers: the
# integer digits in two halves, then the decimals (after the point).
_HALF = (_INTEGER_DIGITS + 1) // 2
_GROUPS = ((1, _INTEGER_DIGITS - _HALF), (_INTEGER_DIGITS - _HALF + 1, _HALF), (_INTEGER_DIGITS + 2, AMOUNT_PLACES))


class MoneySumEquals(models.Func):
    """`total` = `first` + `second`, exactly: a condition for CHECK constraints on money
    columns. PostgreSQL adds NUMERIC exactly. SQLite's arithmetic on the text columns is
    floating point (past 15 significant digits an exact split could be refused, a wrong one
    accepted), so there the fixed-width digits are added in integer groups with their
    carries (non-negative amounts; a negative one never satisfies it)."""

    output_field = models.BooleanField()
    arity = 3

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> Any:
        (total, total_params), (first, first_params), (second, second_params) = (
            compiler.compile(expression) for expression in self.source_expressions
        )
        return f"({total} = ({first} + {second}))", [*total_params, *first_params, *second_params]

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        compiled = [compiler.compile(expression) for expression in self.source_expressions]

        def group(index: int, which: int) -> tuple[str, list[Any]]:
            sql, params = compiled[which]
            start, length = _GROUPS[index]
            return f"CAST(substr({sql}, {start}, {length}) AS INTEGER)", list(params)

        conditions: list[tuple[str, list[Any]]] = []
        carry: tuple[str, list[Any]] = ("0", [])
        for index in reversed(range(len(_GROUPS))):  # the decimals first, then the low half, the high half
            unit = 10 ** _GROUPS[index][1]
            (first, first_params), (second, second_params) = group(index, 1), group(index, 2)
            added = (f"({first} + {second} + {carry[0]})", [*first_params, *second_params, *carry[1]])
            total, total_params = group(index, 0)
            if index == 0:
                conditions.append((f"{total} = {added[0]}", [*total_params, *added[1]]))
            else:
                conditions.append((f"{total} = {added[0]} %% {unit}", [*total_params, *added[1]]))
                carry = (f"({added[0]} / {unit})", added[1])
        return "(" + " AND ".join(sql for sql, _ in conditions) + ")", [p for _, params in conditions for p in params]
