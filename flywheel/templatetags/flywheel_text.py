"""The flywheel's sentences: the wording of flywheel.selectors' insights, one place for
the page (`{{ insight|insight_sentence }}`) and the API's `message`. Numbers with their
unit at a readable precision; the API's other fields keep the exact figures."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.conf import settings

from flywheel.selectors import ContributionInsight, Insight, NextTierInsight, NoRecentTradesInsight
from orders.templatetags.page_format import amount, money_text

register = template.Library()

HUNDRED = Decimal(100)


@register.filter
def meter_value(percent: Decimal) -> Decimal:
    """A percentage as a meter's aria-valuenow, within its 0..100: past the target a value out
    of range is invalid ARIA (aria-valuetext says the real figure)."""
    return min(max(percent, Decimal(0)), HUNDRED)


def _usd(value: Decimal) -> str:
    return f"{money_text(value)} USD"


@register.filter
def insight_sentence(insight: Insight) -> str:
    match insight:
        case NextTierInsight():
            return (
                f"Hold {amount(insight.ttx_needed)} more {settings.TTX_ASSET} to reach "
                f"{insight.tier.name.capitalize()}: {amount(insight.fee_discount * HUNDRED, 2)}% off fees "
                f"and a {amount(insight.revenue_multiplier, 2)}x revenue multiplier: about "
                f"{_usd(insight.monthly_fee_savings)} less in fees and {_usd(insight.projected_monthly_earnings)} "
                "earned a month at the pace of the last 30 days."
            )
        case ContributionInsight():
            return (
                f"Your fees of {_usd(insight.fees_paid_30d)} in 30 days sent "
                f"{_usd(insight.holder_share_generated_30d)} to holders and "
                f"{_usd(insight.reserve_share_generated_30d)} to the reserve."
            )
        case NoRecentTradesInsight():
            return "You have no trades in the last 30 days."
