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
from revenue.streams import LIVE_STREAMS

HUNDRED = Decimal(100)


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
        "tiers": [(tier, selectors.multiplier_for(tier=tier), tier.discount * HUNDRED) for tier in TIERS],
        "ttx_asset": settings.TTX_ASSET,
    }
    if request.user.is_authenticated:
        try:
            impact = selectors.my_impact(user_id=request.user.pk)
        except ApplicationError as exc:  # e.g. ttx_not_configured
            context["impact_error"] = exc
        else:
            context["impact"] = impact
            context["insights"] = selectors.my_insights(impact=impact).insights
            context["impact_discount"] = (impact.tier.discount * HUNDRED) if impact.tier else Decimal(0)
    return render(request, "flywheel/flywheel.html", context)
