"""Money precision, set once for the whole platform."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models

AMOUNT_PLACES = 8
AMOUNT_MAX_DIGITS = 30
ZERO = Decimal(0)


class MoneyField(models.DecimalField):
    """Amounts, prices and quantities: Decimal with 8 decimal places (one satoshi)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", AMOUNT_MAX_DIGITS)
        kwargs.setdefault("decimal_places", AMOUNT_PLACES)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "core.fields.MoneyField", args, kwargs
