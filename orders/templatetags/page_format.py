"""Figures as pages print them."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def amount(value: Decimal | None, places: int = 8) -> str:
    """An exact amount without trailing zeros, grouped, at most `places` decimals (cut, never
    rounded up): 0.00120000 -> "0.0012", 1234.5 -> "1,234.5", 0 -> "0"."""
    if value is None:
        return "—"
    cut = Decimal(value).quantize(Decimal(1).scaleb(-int(places)), rounding="ROUND_DOWN")
    text = f"{cut.normalize():,f}"
    return "0" if text in ("-0", "0") else text
