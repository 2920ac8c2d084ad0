"""The holder / reserve split of revenue.

Rounding rule: holder = gross x holder percentage rounded DOWN to 8 decimal places;
reserve = gross - holder. So holder + reserve == gross exactly, and any sub-satoshi
remainder goes to the reserve."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from orders.engine import quantize_down


@dataclass(frozen=True, slots=True)
class Split:
    holder: Decimal
    reserve: Decimal


def revenue_split(*, gross: Decimal, holder_percentage: Decimal | None = None) -> Split:
    percentage = settings.REVENUE_HOLDER_PERCENTAGE if holder_percentage is None else holder_percentage
    holder = quantize_down(gross * percentage)
    return Split(holder=holder, reserve=gross - holder)
