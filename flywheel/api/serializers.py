"""The flywheel API's answers, declared: each serializer reads the view-ready object a
flywheel selector returns. Amounts and percentages are decimal strings (the contract)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import AmountText
from flywheel.selectors import Insight, NextTierInsight
from flywheel.templatetags.flywheel_text import insight_sentence

HUNDRED = Decimal(100)


def percent_text(fraction: Decimal) -> str:
    """A fraction as a percentage with two places ("12.50")."""
    return f"{(fraction * HUNDRED).quantize(Decimal('0.01')):f}"


@extend_schema_field(OpenApiTypes.STR)
class PercentText(serializers.Field):
    def to_representation(self, value: Any) -> str:
        return percent_text(value)


@extend_schema_field(OpenApiTypes.STR)
class DecimalText(serializers.Field):
    """A decimal as it is (a multiplier, a share of supply)."""

    def to_representation(self, value: Any) -> str:
        return f"{value:f}"


@extend_schema_field({"type": "string", "nullable": True})
class TierName(serializers.Field):
    """A fee tier by name (null without one: DRF writes None itself)."""

    def to_representation(self, value: Any) -> str:
        return str(value.name)


class FlywheelMetricsStreamSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    collected = AmountText()
    holder_share = AmountText()
    reserve_share = AmountText()


class FlywheelMetricsSerializer(serializers.Serializer):
    total_platform_revenue = AmountText(source="totals.gross")
    holder_share_total = AmountText(source="totals.holder")
    reserve_share_total = AmountText(source="totals.reserve")
    holder_percentage = PercentText()
    reserve_percentage = PercentText()
    streams = FlywheelMetricsStreamSerializer(many=True)


class FlywheelReserveStatusSerializer(serializers.Serializer):
    total_reserve_collected = AmountText()
    circulating_supply = AmountText()
    backing_per_token = AmountText()


class FlywheelRevenueStreamSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    collected = AmountText()
    distributed_to_holders = AmountText()
    target_monthly = AmountText()
    collected_this_month = AmountText()
    progress = DecimalText()


@extend_schema_field(OpenApiTypes.STR)
class _TotalsProgress(serializers.Field):
    """Percent of the monthly targets; "0.00" without a target."""

    def to_representation(self, value: Any) -> str:
        return "0.00" if value.progress is None else f"{value.progress:f}"


class FlywheelRevenueStreamsSummarySerializer(serializers.Serializer):
    total_collected = AmountText(source="collected")
    total_distributed_to_holders = AmountText(source="distributed_to_holders")
    total_target_monthly = AmountText(source="target_monthly")
    collected_this_month = AmountText()
    progress = _TotalsProgress(source="*")
    active_streams = serializers.IntegerField()


class FlywheelRevenueStreamsSerializer(serializers.Serializer):
    streams = FlywheelRevenueStreamSerializer(many=True)
    summary = FlywheelRevenueStreamsSummarySerializer()


class FlywheelProjectionSerializer(serializers.Serializer):
    ttx_amount = AmountText()
    monthly_volume = AmountText()
    tier = TierName()
    fee_discount = PercentText()
    revenue_multiplier = DecimalText()
    share_of_supply = DecimalText()
    holder_pool_monthly = AmountText()
    monthly_earnings = AmountText()
    annual_earnings = AmountText()
    monthly_fees_before_discount = AmountText()
    monthly_fee_savings = AmountText()


class FlywheelImpactSerializer(serializers.Serializer):
    ttx_holdings = AmountText()
    monthly_volume = AmountText()
    trades_30d = serializers.IntegerField()
    fees_paid_30d = AmountText()
    holder_share_generated_30d = AmountText()
    reserve_share_generated_30d = AmountText()
    tier = TierName()
    fee_discount = PercentText()
    revenue_multiplier = DecimalText()
    share_of_supply = DecimalText()
    holder_revenue_30d = AmountText()
    monthly_earnings = AmountText()
    annual_earnings = AmountText()
    next_tier = TierName()


class FlywheelComparisonSerializer(serializers.Serializer):
    # Reads flywheel.selectors.competitor_comparison.

    competitor = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    note = serializers.CharField()
    their_maker_fee_bps = AmountText()
    their_taker_fee_bps = AmountText()
    our_maker_fee_bps = AmountText()
    our_taker_fee_bps = AmountText()
    example_monthly_volume = AmountText()
    their_taker_cost = AmountText()
    our_taker_cost = AmountText()
    monthly_savings = AmountText()
    holder_share_of_our_fees = AmountText()


class FlywheelNextTierFiguresSerializer(serializers.Serializer):
    next_tier = TierName(source="tier")
    ttx_needed = AmountText()
    fee_discount = PercentText()  # in percent, as every other flywheel answer writes it
    revenue_multiplier = DecimalText()
    monthly_fee_savings = AmountText()
    projected_monthly_earnings = AmountText()
    projected_annual_earnings = AmountText()


class FlywheelInsightSerializer(serializers.Serializer):
    # One insight of flywheel.selectors.my_insights: its kind, its sentence (the page's,
    # flywheel_text.insight_sentence), then a next tier's figures (the schema cannot declare
    # fields that differ per kind).

    kind = serializers.CharField()
    message = serializers.CharField()

    def to_representation(self, instance: Insight) -> dict[str, object]:
        body: dict[str, object] = {"kind": instance.kind, "message": insight_sentence(instance)}
        if isinstance(instance, NextTierInsight):
            body.update(FlywheelNextTierFiguresSerializer(instance).data)
        return body


class FlywheelInsightsSerializer(serializers.Serializer):
    # Reads flywheel.selectors.my_insights.

    tier = TierName()
    insights = FlywheelInsightSerializer(many=True)
