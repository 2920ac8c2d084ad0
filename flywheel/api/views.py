from __future__ import annotations

import csv
import io
from decimal import Decimal

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.negotiation import CsvAnswerNegotiation
from core.api.params import decimal_openapi, decimal_param
from core.api.request import request_user
from core.api.schema import error_responses
from flywheel import selectors
from flywheel.api.serializers import (
    FlywheelComparisonSerializer,
    FlywheelImpactSerializer,
    FlywheelInsightsSerializer,
    FlywheelMetricsSerializer,
    FlywheelProjectionSerializer,
    FlywheelReserveStatusSerializer,
    FlywheelRevenueStreamsSerializer,
)

# The personal figures need the TTX asset; a platform without it answers 503.
TTX_NOT_CONFIGURED = error_responses(503, s503="`ttx_not_configured`: the platform has no TTX asset.")


MAX_AMOUNT = Decimal("1e15")


class MetricsApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: FlywheelMetricsSerializer})
    def get(self, request: Request) -> Response:
        figures = {
            "totals": selectors.revenue_totals(),
            "holder_percentage": settings.REVENUE_HOLDER_PERCENTAGE,
            "reserve_percentage": settings.REVENUE_RESERVE_PERCENTAGE,
            "streams": selectors.stream_figures_list(),
        }
        return Response(FlywheelMetricsSerializer(figures).data)


class ReserveStatusApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: FlywheelReserveStatusSerializer})
    def get(self, request: Request) -> Response:
        return Response(FlywheelReserveStatusSerializer(selectors.reserve_status()).data)


class RevenueStreamsApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: FlywheelRevenueStreamsSerializer})
    def get(self, request: Request) -> Response:
        streams = selectors.stream_figures_list()
        body = {"streams": streams, "summary": selectors.stream_totals(streams=streams)}
        return Response(FlywheelRevenueStreamsSerializer(body).data)


class CalculatorApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[
            decimal_openapi("ttx_amount", required=True, description="At most the circulating supply."),
            decimal_openapi("monthly_volume", required=True),
            decimal_openapi("platform_revenue", required=False),
        ],
        responses={200: FlywheelProjectionSerializer},
    )
    def get(self, request: Request) -> Response:
        ttx = decimal_param(request, "ttx_amount", required=True, maximum=settings.TTX_CIRCULATING_SUPPLY)
        volume = decimal_param(request, "monthly_volume", required=True, maximum=MAX_AMOUNT)
        revenue = decimal_param(request, "platform_revenue", required=False, maximum=MAX_AMOUNT)
        assert ttx is not None and volume is not None  # noqa: S101  (required=True raised otherwise)
        projection = selectors.earnings_project(ttx_amount=ttx, monthly_volume=volume, platform_revenue=revenue)
        return Response(FlywheelProjectionSerializer(projection).data)


class ComparisonApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[decimal_openapi("monthly_volume", required=False)], responses={200: FlywheelComparisonSerializer}
    )
    def get(self, request: Request, competitor: str) -> Response:
        volume = decimal_param(request, "monthly_volume", required=False, maximum=MAX_AMOUNT)
        body = selectors.competitor_comparison(key=competitor, monthly_volume=volume or Decimal(100_000))
        return Response(FlywheelComparisonSerializer(body).data)


class MyImpactApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: FlywheelImpactSerializer, **TTX_NOT_CONFIGURED})
    def get(self, request: Request) -> Response:
        return Response(FlywheelImpactSerializer(selectors.my_impact(user_id=request_user(request).pk)).data)


class MyImpactExportApi(APIView):
    permission_classes = [IsAuthenticated]
    content_negotiation_class = CsvAnswerNegotiation

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR, **TTX_NOT_CONFIGURED})
    def get(self, request: Request) -> HttpResponse:
        user = request_user(request)
        body = FlywheelImpactSerializer(selectors.my_impact(user_id=user.pk)).data
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

    @extend_schema(responses={200: FlywheelInsightsSerializer, **TTX_NOT_CONFIGURED})
    def get(self, request: Request) -> Response:
        insights = selectors.my_insights(impact=selectors.my_impact(user_id=request_user(request).pk))
        return Response(FlywheelInsightsSerializer(insights).data)
