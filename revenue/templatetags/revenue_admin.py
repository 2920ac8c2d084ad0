"""Times and amounts as staff read them in the revenue admin pages."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django import template
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import timezone
from django.utils.dateparse import parse_datetime

register = template.Library()

WEI_PER_ETH = Decimal(10) ** 18


def moment(value: object) -> datetime | None:
    """A datetime, or the fixed-width ISO text the metadata document keeps times as."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        parsed = parse_datetime(value)
        if parsed is not None and timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        return parsed
    return None


@register.filter
def when(value: object) -> str:
    """'2026-12-03 07:20:01 UTC (in 3 minutes)'; empty for no time."""
    at = moment(value)
    if at is None:
        return ""
    at = timezone.localtime(at)
    return f"{at:%Y-%m-%d %H:%M:%S} {at.tzname()} ({naturaltime(at)})"


@register.filter
def eth(wei: object) -> str:
    """A wei amount (int or decimal text) in ETH, to 6 decimals; empty when unknown."""
    try:
        amount = Decimal(str(wei)) / WEI_PER_ETH
    except (InvalidOperation, ValueError):  # "", None: not known yet
        return ""
    return f"{amount.quantize(Decimal('0.000001')):,} ETH"
