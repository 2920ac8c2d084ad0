from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.params import decimal_openapi, decimal_param
from core.api.request import request_user
from core.api.schema import error_responses
from core.money import format_amount
from flywheel import selectors

# The personal figures need the TTX asset; a platform without it answers 503.
TTX_NOT_CONFIGURED = error_responses(503, s503="`ttx_not_configured`: the platform has no TTX asset.")


def _amount(**kwargs: Any) -> serializers.CharField:
    """Amounts and percentages are decimal strings."""
    return serializers.CharField(**kwargs)


def _amounts(*names: str) -> dict[str, serializers.Field]:
    return {name: _amount() for name in names}


METRICS = inline_serializer(
    "FlywheelMetrics",
    {
        **_amounts(
            "total_platform_revenue",
            "holder_share_total",
            "reserve_share_total",
            "holder_percentage",
            "reserve_percentage",
        ),
        "streams": inline_serializer(
            "FlywheelMetricsStream",
            {
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                **_amounts("collected", "holder_share", "reserve_share"),
            },
            many=True,
        ),
    },
)
RESERVE_STATUS = inline_serializer(
    "FlywheelReserveStatus", _amounts("total_reserve_collected", "backing_per_token", "circulating_supply")
)
REVENUE_STREAMS = inline_serializer(
    "FlywheelRevenueStreams",
    {
        "streams": inline_serializer(
            "FlywheelRevenueStream",
            {
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                "description": serializers.CharField(),
                **_amounts("collected", "distributed_to_holders", "target_monthly", "collected_this_month", "progress"),
            },
            many=True,
        ),
        "summary": inline_serializer(
            "FlywheelRevenueStreamsSummary",
            {
                **_amounts(
                    "total_collected",
                    "total_distributed_to_holders",
                    "total_target_monthly",
                    "collected_this_month",
                    "progress",
                ),
                "active_streams": serializers.IntegerField(),
            },
        ),
    },
)
PROJECTION = inline_serializer(
    "FlywheelProjection",
    {
        **_amounts(
            "ttx_amount",
            "monthly_volume",
            "fee_discount",
            "revenue_multiplier",
            "share_of_supply",
            "holder_pool_monthly",
            "monthly_earnings",
            "annual_earnings",
            "monthly_fees_before_discount",
            "monthly_fee_savings",
        ),
        "tier": serializers.CharField(allow_null=True),
    },
)
COMPARISON = inline_serializer(
    "FlywheelComparison",
    {
        "competitor": serializers.CharField(),
        "name": serializers.CharField(),
        "kind": serializers.CharField(),
        "note": serializers.CharField(),
        **_amounts(
            "their_maker_fee_bps",
            "their_taker_fee_bps",
            "our_maker_fee_bps",
            "our_taker_fee_bps",
            "example_monthly_volume",
            "their_taker_cost",
            "our_taker_cost",
            "monthly_savings",
            "holder_share_of_our_fees",
        ),
    },
)
IMPACT = inline_serializer(
    "FlywheelImpact",
    {
        **_amounts(
            "ttx_holdings",
            "monthly_volume",
            "fees_paid_30d",
            "holder_share_generated_30d",
            "reserve_share_generated_30d",
            "fee_discount",
            "revenue_multiplier",
            "share_of_supply",
            "holder_revenue_30d",
            "monthly_earnings",
            "annual_earnings",
        ),
        "trades_30d": serializers.IntegerField(),
        "tier": serializers.CharField(allow_null=True),
        "next_tier": serializers.CharField(allow_null=True),
    },
)
INSIGHTS = inline_serializer(
    "FlywheelInsights",
    {
        "tier": serializers.CharField(allow_null=True),
        "insights": inline_serializer(
            "FlywheelInsight",
            # Each kind adds its own figures (decimal strings) to these two.
            {"kind": serializers.CharField(), "message": serializers.CharField()},
            many=True,
        ),
    },
)

HUNDRED = Decimal(100)
MAX_AMOUNT = Decimal("1e15")


def _percent(fraction: Decimal) -> str:
    return f"{(fraction * HUNDRED).quantize(Decimal('0.01')):f}"


def _impact_body(impact: selectors.Impact) -> dict[str, Any]:
    return {
        "ttx_holdings": format_amount(impact.ttx_holdings),
        "monthly_volume": format_amount(impact.monthly_volume),
        "trades_30d": impact.trades_30d,
        "fees_paid_30d": format_amount(impact.fees_paid_30d),
        "holder_share_generated_30d": format_amount(impact.holder_share_generated_30d),
        "reserve_share_generated_30d": format_amount(impact.reserve_share_generated_30d),
        "tier": None if impact.tier is None else impact.tier.name,
        "fee_discount": _percent(Decimal(0) if impact.tier is None else impact.tier.discount),
        "revenue_multiplier": f"{impact.revenue_multiplier:f}",
        "share_of_supply": f"{impact.share_of_supply:f}",
        "holder_revenue_30d": format_amount(impact.holder_revenue_30d),
        "monthly_earnings": format_amount(impact.monthly_earnings),
        "annual_earnings": format_amount(impact.annual_earnings),
        "next_tier": None if impact.next_tier is None else impact.next_tier.name,
    }


class MetricsApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: METRICS})
    def get(self, request: Request) -> Response:
        totals = selectors.revenue_totals()
        streams = selectors.stream_figures_list()
        return Response(
            {
                "total_platform_revenue": format_amount(totals["gross"]),
                "holder_share_total": format_amount(totals["holder"]),
                "reserve_share_total": format_amount(totals["reserve"]),
                "holder_percentage": _percent(settings.REVENUE_HOLDER_PERCENTAGE),
                "reserve_percentage": _percent(settings.REVENUE_RESERVE_PERCENTAGE),
                "streams": [
                    {
                        "id": s.id,
                        "name": s.name,
                        "collected": format_amount(s.collected),
                        "holder_share": format_amount(s.holder_share),
                        "reserve_share": format_amount(s.reserve_share),
                    }
                    for s in streams
                ],
            }
        )


class ReserveStatusApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: RESERVE_STATUS})
    def get(self, request: Request) -> Response:
        status = selectors.reserve_status()
        return Response({key: format_amount(value) for key, value in status.items()})


class RevenueStreamsApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: REVENUE_STREAMS})
    def get(self, request: Request) -> Response:
        streams = selectors.stream_figures_list()
        totals = selectors.stream_totals(streams=streams)
        return Response(
            {
                "streams": [
                    {
                        "id": s.id,
                        "name": s.name,
                        "description": s.description,
                        "collected": format_amount(s.collected),
                        "distributed_to_holders": format_amount(s.distributed_to_holders),
                        "target_monthly": format_amount(s.target_monthly),
                        "collected_this_month": format_amount(s.collected_this_month),
                        "progress": f"{s.progress:f}",
                    }
                    for s in streams
                ],
                "summary": {
                    "total_collected": format_amount(totals.collected),
                    "total_distributed_to_holders": format_amount(totals.distributed_to_holders),
                    "total_target_monthly": format_amount(totals.target_monthly),
                    "collected_this_month": format_amount(totals.collected_this_month),
                    "progress": "0.00" if totals.progress is None else f"{totals.progress:f}",
                    "active_streams": totals.active_streams,
                },
            }
        )


class CalculatorApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[
            decimal_openapi("ttx_amount", required=True, description="At most the circulating supply."),
            decimal_openapi("monthly_volume", required=True),
            decimal_openapi("platform_revenue", required=False),
        ],
        responses={200: PROJECTION},
    )
    def get(self, request: Request) -> Response:
        ttx = decimal_param(request, "ttx_amount", required=True, maximum=settings.TTX_CIRCULATING_SUPPLY)
        volume = decimal_param(request, "monthly_volume", required=True, maximum=MAX_AMOUNT)
        revenue = decimal_param(request, "platform_revenue", required=False, maximum=MAX_AMOUNT)
        assert ttx is not None and volume is not None  # noqa: S101  (required=True raised otherwise)
        p = selectors.earnings_project(ttx_amount=ttx, monthly_volume=volume, platform_revenue=revenue)
        return Response(
            {
                "ttx_amount": format_amount(p.ttx_amount),
                "monthly_volume": format_amount(p.monthly_volume),
                "tier": None if p.tier is None else p.tier.name,
                "fee_discount": _percent(p.fee_discount),
                "revenue_multiplier": f"{p.revenue_multiplier:f}",
                "share_of_supply": f"{p.share_of_supply:f}",
                "holder_pool_monthly": format_amount(p.holder_pool_monthly),
                "monthly_earnings": format_amount(p.monthly_earnings),
                "annual_earnings": format_amount(p.annual_earnings),
                "monthly_fees_before_discount": format_amount(p.monthly_fees_before_discount),
                "monthly_fee_savings": format_amount(p.monthly_fee_savings),
            }
        )


class ComparisonApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(parameters=[decimal_openapi("monthly_volume", required=False)], responses={200: COMPARISON})
    def get(self, request: Request, competitor: str) -> Response:
        volume = decimal_param(request, "monthly_volume", required=False, maximum=MAX_AMOUNT)
        body = selectors.competitor_comparison(key=competitor, monthly_volume=volume or Decimal(100_000))
        return Response({k: format_amount(v) if isinstance(v, Decimal) else v for k, v in body.items()})


class MyImpactApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: IMPACT, **TTX_NOT_CONFIGURED})
    def get(self, request: Request) -> Response:
        return Response(_impact_body(selectors.my_impact(user_id=request_user(request).pk)))


class MyImpactExportApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR, **TTX_NOT_CONFIGURED})
    def get(self, request: Request) -> HttpResponse:
        user = request_user(request)
        body = _impact_body(selectors.my_impact(user_id=user.pk))
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["metric", "value"])
        writer.writerow(["username", user.get_username()])
        for key, value in body.items():
            writer.writerow([key, "" if value is None else value])
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="my-impact.csv"'
        return response


class MyInsightsApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: INSIGHTS, **TTX_NOT_CONFIGURED})
    def get(self, request: Request) -> Response:
        result = selectors.my_insights(impact=selectors.my_impact(user_id=request_user(request).pk))
        insights = [
            {k: format_amount(v) if isinstance(v, Decimal) else v for k, v in item.items()}
            for item in result["insights"]  # type: ignore[attr-defined]
        ]
        return Response({"tier": result["tier"], "insights": insights})
