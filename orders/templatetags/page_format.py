"""Figures as pages print them."""

from __future__ import annotations

import json
from decimal import ROUND_DOWN, Decimal

from django import template

from accounts.error_text import error_sentence
from orders.engine.types import ExpiryReason, SelfTradePrevention, Side

register = template.Library()


@register.filter
def amount(value: Decimal | None, places: int = 8) -> str:
    """An exact amount without trailing zeros, grouped, at most `places` decimals (cut, never
    rounded up): 0.00120000 -> "0.0012", 1234.5 -> "1,234.5", 0 -> "0"."""
    if value is None:
        return "—"
    cut = Decimal(value).quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_DOWN)
    text = f"{cut.normalize():,f}"
    return "0" if text in ("-0", "0") else text


def money_text(value: Decimal | None) -> str:
    """A USD figure at a sensible precision: cents from 1 up (and for 0), up to 6 decimals
    below 1 so a small fee does not read as 0.00; grouped, cut, never rounded up."""
    if value is None:
        return "—"
    value = Decimal(value)
    if value == 0 or abs(value) >= 1:
        return f"{value.quantize(Decimal('0.01'), rounding=ROUND_DOWN):,f}"
    return amount(value, 6)


@register.filter
def money(value: Decimal | None) -> str:
    return money_text(value)


@register.filter
def side_trend(side: str) -> str:
    """A side's colour class: "up" for a buy, "down" for a sell."""
    return "up" if side == Side.BUY else "down"


@register.filter
def stp_chosen(stp: str) -> bool:
    """Whether an order asked for a self-trade prevention other than the default."""
    return stp != SelfTradePrevention.SKIP


@register.simple_tag
def reason_sentences() -> str:
    """{reason: sentence} of every reason an order expires for, as JSON: the stream's notification
    of an expired order (static/js/streams.js) says the sentence, as the ticket and the history
    do, not the code it receives. Escaped by the template, for an attribute."""
    return json.dumps({reason.value: error_sentence(reason.value) for reason in ExpiryReason})
