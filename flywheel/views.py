"""The flywheel page: the platform's public figures for everyone, the trader's own
impact when logged in. Every figure comes from flywheel.selectors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.errors import ApplicationError
from flywheel import selectors
from orders.engine import TIERS

HUNDRED = Decimal(100)


@require_GET
def flywheel_page(request: HttpRequest) -> HttpResponse:
    streams = selectors.stream_figures_list()
    total_target = sum((s.target_monthly for s in streams), Decimal(0))
    this_month = sum((s.collected_this_month for s in streams), Decimal(0))
    context: dict[str, Any] = {
        "totals": selectors.revenue_totals(),
        "reserve": selectors.reserve_status(),
        "holder_percentage": settings.REVENUE_HOLDER_PERCENTAGE * HUNDRED,
        "reserve_percentage": settings.REVENUE_RESERVE_PERCENTAGE * HUNDRED,
        "streams": streams,
        "total_target": total_target,
        "this_month": this_month,
        "month_progress": (this_month / total_target * HUNDRED).quantize(Decimal("0.01")) if total_target else None,
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
            context["insights"] = selectors.my_insights(impact=impact)["insights"]
            context["impact_discount"] = (impact.tier.discount * HUNDRED) if impact.tier else Decimal(0)
    return render(request, "flywheel/flywheel.html", context)
