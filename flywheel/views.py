"""The flywheel page: the platform's public figures for everyone, the trader's own
impact when logged in. Every figure comes from flywheel.selectors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from core.errors import ApplicationError
from flywheel import selectors
from orders.engine import TIERS
from orders.templatetags.page_format import amount, money_text
from revenue.streams import LIVE_STREAMS

HUNDRED = Decimal(100)
USD = "USD"


def _usd(value: Decimal) -> str:
    return f"{money_text(value)} {USD}"


def _insight_lines(insights: Any, *, impact: Any) -> list[str]:
    """The insights of flywheel.selectors.my_insights as sentences whose numbers have their
    unit and a readable precision (the API keeps the exact figures)."""
    lines = []
    for item in insights:
        if item["kind"] == "next_tier":
            lines.append(
                f"Hold {amount(item['ttx_needed'], 2)} more {settings.TTX_ASSET} to reach "
                f"{str(item['next_tier']).capitalize()}: {amount(item['fee_discount'] * HUNDRED, 2)}% off fees and a "
                f"{amount(Decimal(item['revenue_multiplier']), 2)}x revenue multiplier: about "
                f"{_usd(item['monthly_fee_savings'])} less in fees and {_usd(item['projected_monthly_earnings'])} "
                "earned a month at the pace of the last 30 days."
            )
        elif item["kind"] == "your_contribution":
            lines.append(
                f"Your fees of {_usd(impact.fees_paid_30d)} in 30 days sent "
                f"{_usd(impact.holder_share_generated_30d)} to holders and "
                f"{_usd(impact.reserve_share_generated_30d)} to the reserve."
            )
        else:
            lines.append(str(item["message"]))
    return lines


@require_safe
def flywheel_page(request: HttpRequest) -> HttpResponse:
    figures = selectors.stream_figures_list()
    streams = [s for s in figures if s.id in LIVE_STREAMS]  # the targets count for live streams only
    context: dict[str, Any] = {
        "totals": selectors.revenue_totals(),
        "reserve": selectors.reserve_status(),
        "holder_percentage": settings.REVENUE_HOLDER_PERCENTAGE * HUNDRED,
        "reserve_percentage": settings.REVENUE_RESERVE_PERCENTAGE * HUNDRED,
        "streams": streams,
        "planned_streams": [s for s in figures if s.id not in LIVE_STREAMS],
        "stream_totals": selectors.stream_totals(streams=streams),
        "tiers": [(tier, selectors.multiplier_for(tier), tier.discount * HUNDRED) for tier in TIERS],
        "ttx_asset": settings.TTX_ASSET,
    }
    if request.user.is_authenticated:
        try:
            impact = selectors.my_impact(user_id=request.user.pk)
        except ApplicationError as exc:  # e.g. ttx_not_configured
            context["impact_error"] = exc
        else:
            context["impact"] = impact
            context["insights"] = _insight_lines(selectors.my_insights(impact=impact)["insights"], impact=impact)
            context["impact_discount"] = (impact.tier.discount * HUNDRED) if impact.tier else Decimal(0)
    return render(request, "flywheel/flywheel.html", context)
