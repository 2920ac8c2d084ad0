"""Every flywheel figure, computed from trades, revenue events and wallets with SQL
aggregation: a fixed number of queries per call, Decimal throughout, sums exact on both
backends (core.db.money_sums: SQLite would add the money text columns as floats). The
formulas are stated in docs/flywheel.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import ClassVar

from django.conf import settings
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from core.db import money_sums, money_totals
from core.fields import MoneyField
from flywheel.competitors import COMPETITORS, Competitor
from flywheel.errors import CompetitorNotFound, TtxNotConfigured
from orders.engine import TIERS, FeeTier, fee_tier_for, quantize_down
from orders.models import Asset, Trade, Wallet
from revenue.models import RevenueEvent, RevenueStream
from revenue.selectors import currency_usd_rates, holder_share_delivered, stream_usd_sums, usd_totals

ZERO = Decimal(0)
HUNDRED = Decimal(100)
CENT = Decimal("0.01")  # progress in percent, two places
# A holding's share of the supply, T / S: T has 8 places and 1/S has 9 with the default
# S = 500,000,000 (2**8 x 5**9), so 17 places give it whole; past them (another supply)
# it is rounded down, never overstated.
SHARE_QUANTUM = Decimal("1e-18")
MONTHS_PER_YEAR = 12
WINDOW_DAYS = 30
# Revenue multiplier per fee tier (bronze .. diamond); 1.0 below the first tier.
MULTIPLIERS = {"bronze": Decimal("1.1"), "silver": Decimal("1.25"), "gold": Decimal("1.5"),
               "platinum": Decimal("2.0"), "diamond": Decimal("3.0")}  # fmt: skip


def _q8(value: Decimal) -> Decimal:
    return quantize_down(value)


def _share_of_supply(share: Decimal) -> Decimal:
    return share.quantize(SHARE_QUANTUM, rounding=ROUND_DOWN)


def multiplier_for(*, tier: FeeTier | None) -> Decimal:
    return Decimal(1) if tier is None else MULTIPLIERS[tier.name]


def _ttx_asset_id() -> int:
    asset_id = Asset.objects.filter(symbol=settings.TTX_ASSET).values_list("pk", flat=True).first()
    if asset_id is None:
        raise TtxNotConfigured()
    return int(asset_id)


# --- public -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamFigures:
    id: int
    name: str
    description: str
    collected: Decimal
    holder_share: Decimal
    reserve_share: Decimal
    distributed_to_holders: Decimal
    target_monthly: Decimal
    collected_this_month: Decimal

    @property
    def progress(self) -> Decimal:
        """Share of the monthly target collected this calendar month, in percent ("0.00"
        without a target, as StreamTotals answers it)."""
        if not self.target_monthly:
            return ZERO.quantize(CENT)
        return (self.collected_this_month / self.target_monthly * HUNDRED).quantize(CENT)


@dataclass(frozen=True, slots=True)
class StreamTotals:
    """The sums over some streams: the flywheel page's live ones, the API's every one."""

    collected: Decimal
    distributed_to_holders: Decimal
    target_monthly: Decimal
    collected_this_month: Decimal
    active_streams: int  # streams that collected anything

    @property
    def progress(self) -> Decimal | None:
        """This month's collections in percent of the monthly targets; None without a target."""
        if not self.target_monthly:
            return None
        return (self.collected_this_month / self.target_monthly * HUNDRED).quantize(CENT)


def stream_totals(*, streams: Sequence[StreamFigures]) -> StreamTotals:
    return StreamTotals(
        collected=sum((s.collected for s in streams), ZERO),
        distributed_to_holders=sum((s.distributed_to_holders for s in streams), ZERO),
        target_monthly=sum((s.target_monthly for s in streams), ZERO),
        collected_this_month=sum((s.collected_this_month for s in streams), ZERO),
        active_streams=sum(1 for s in streams if s.collected > 0),
    )


# --- US dollars ---------------------------------------------------------------------------
# Fees, and so revenue events, are in each market's quote asset: USDT for most, BTC for an
# ETH-BTC market. Every figure here is in US dollars: sums are taken per currency and each
# converted at revenue.selectors.currency_usd_rates (USD-pegged one for one, another
# currency at its market against USDT), rounded down; a currency with no such market is
# left out (it has no dollar value here).


def _revenue_usd(
    sums: dict[str, tuple[Decimal, ...]], *, rates: dict[str, Decimal] | None = None
) -> tuple[Decimal, ...]:
    """(gross, holder, reserve, *more) in US dollars from per-currency (gross, holder, *more):
    the reserve is the gross less the holder share, as per event (docs/revenue.md)."""
    if not sums:
        return ZERO, ZERO, ZERO
    gross, holder, *more = usd_totals(sums=sums, rates=rates)
    return (gross, holder, gross - holder, *more)


def stream_figures_list(*, now: datetime | None = None) -> list[StreamFigures]:
    """Three queries at most: the streams, one grouped aggregate over their events (per
    stream and currency), and the dollar rates of the currencies other than USD.

    `distributed_to_holders` is the holder share of the stream's delivered events, summed
    per currency and converted like the other figures. Not `RevenueStream.distributed`: the
    delivery's books add every delivered share in its own currency (USDT and ETH together)."""
    month_start = (now or timezone.now()).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    this_month = Case(
        When(created_at__gte=month_start, then=F("gross_amount")), default=Value(ZERO), output_field=MoneyField()
    )
    usd = stream_usd_sums(
        events=RevenueEvent.objects.annotate(gross_this_month=this_month, holder_delivered=holder_share_delivered()),
        fields=["gross_amount", "holder_share", "gross_this_month", "holder_delivered"],
    )
    sums = {
        stream_id: {"gross": gross, "holder": holder, "reserve": gross - holder, "month": month, "distributed": paid}
        for stream_id, (gross, holder, month, paid) in usd.items()
    }
    empty = {"gross": ZERO, "holder": ZERO, "reserve": ZERO, "month": ZERO, "distributed": ZERO}
    return [
        StreamFigures(
            id=stream.pk,
            name=stream.name,
            description=stream.description,
            collected=sums.get(stream.pk, empty)["gross"],
            holder_share=sums.get(stream.pk, empty)["holder"],
            reserve_share=sums.get(stream.pk, empty)["reserve"],
            distributed_to_holders=sums.get(stream.pk, empty)["distributed"],
            target_monthly=stream.target_monthly,
            collected_this_month=sums.get(stream.pk, empty)["month"],
        )
        for stream in RevenueStream.objects.order_by("id")
    ]


def revenue_totals() -> dict[str, Decimal]:
    gross, holder, reserve = _revenue_usd(
        money_sums(RevenueEvent.objects.all(), group_by="currency", fields=["gross_amount", "holder_share"])
    )
    return {"gross": gross, "holder": holder, "reserve": reserve}


def reserve_status() -> dict[str, Decimal]:
    reserve = revenue_totals()["reserve"]
    supply = settings.TTX_CIRCULATING_SUPPLY
    return {
        "total_reserve_collected": reserve,
        "circulating_supply": supply,
        "backing_per_token": _q8(reserve / supply) if supply else ZERO,
    }


def _revenue_last_30_days(*, field: str, now: datetime | None = None) -> dict[str, tuple[Decimal, ...]]:
    since = (now or timezone.now()) - timedelta(days=WINDOW_DAYS)
    return money_sums(RevenueEvent.objects.filter(created_at__gte=since), group_by="currency", fields=[field])


@dataclass(frozen=True, slots=True)
class Projection:
    ttx_amount: Decimal
    tier: FeeTier | None
    revenue_multiplier: Decimal
    share_of_supply: Decimal
    holder_pool_monthly: Decimal
    monthly_earnings: Decimal
    annual_earnings: Decimal
    fee_discount: Decimal
    monthly_volume: Decimal
    monthly_fees_before_discount: Decimal
    monthly_fee_savings: Decimal


def earnings_project(*, ttx_amount: Decimal, monthly_volume: Decimal, platform_revenue: Decimal | None) -> Projection:
    """platform_revenue: the platform's monthly revenue to project from; by default the
    revenue actually collected in the last 30 days."""
    monthly_revenue = (
        platform_revenue
        if platform_revenue is not None
        else (usd_totals(sums=_revenue_last_30_days(field="gross_amount")) or (ZERO,))[0]
    )
    holder_pool = _q8(monthly_revenue * settings.REVENUE_HOLDER_PERCENTAGE)
    tier = fee_tier_for(ttx_amount)
    multiplier = multiplier_for(tier=tier)
    supply = settings.TTX_CIRCULATING_SUPPLY
    share = ttx_amount / supply if supply else ZERO
    monthly = _q8(holder_pool * share * multiplier)
    fees = _q8(monthly_volume * Decimal(settings.TAKER_FEE_BPS) / Decimal(10_000))
    discount = ZERO if tier is None else tier.discount
    return Projection(
        ttx_amount=ttx_amount,
        tier=tier,
        revenue_multiplier=multiplier,
        share_of_supply=_share_of_supply(share),
        holder_pool_monthly=holder_pool,
        monthly_earnings=monthly,
        annual_earnings=monthly * MONTHS_PER_YEAR,
        fee_discount=discount,
        monthly_volume=monthly_volume,
        monthly_fees_before_discount=fees,
        monthly_fee_savings=_q8(fees * discount),
    )


def competitor_comparison(*, key: str, monthly_volume: Decimal) -> dict[str, object]:
    competitor: Competitor | None = COMPETITORS.get(key.lower())
    if competitor is None:
        raise CompetitorNotFound()
    ours_maker, ours_taker = Decimal(settings.MAKER_FEE_BPS), Decimal(settings.TAKER_FEE_BPS)
    their_cost = _q8(monthly_volume * competitor.taker_fee_bps / Decimal(10_000))
    our_cost = _q8(monthly_volume * ours_taker / Decimal(10_000))
    return {
        "competitor": competitor.key,
        "name": competitor.name,
        "kind": competitor.kind,
        "note": competitor.note,
        "their_maker_fee_bps": competitor.maker_fee_bps,
        "their_taker_fee_bps": competitor.taker_fee_bps,
        "our_maker_fee_bps": ours_maker,
        "our_taker_fee_bps": ours_taker,
        "example_monthly_volume": monthly_volume,
        "their_taker_cost": their_cost,
        "our_taker_cost": our_cost,
        "monthly_savings": their_cost - our_cost,
        "holder_share_of_our_fees": _q8(our_cost * settings.REVENUE_HOLDER_PERCENTAGE),
    }


# --- personal ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impact:
    ttx_holdings: Decimal
    monthly_volume: Decimal
    trades_30d: int
    fees_paid_30d: Decimal
    holder_share_generated_30d: Decimal
    reserve_share_generated_30d: Decimal
    tier: FeeTier | None
    next_tier: FeeTier | None
    revenue_multiplier: Decimal
    share_of_supply: Decimal
    holder_revenue_30d: Decimal
    monthly_earnings: Decimal
    annual_earnings: Decimal

    @property
    def fee_discount(self) -> Decimal:
        return ZERO if self.tier is None else self.tier.discount


def my_impact(*, user_id: int, now: datetime | None = None) -> Impact:
    """Five queries (six with a currency other than USD): TTX asset, the caller's TTX, their
    30-day trades' sums per quote asset and count, 30-day holder revenue per currency (and
    the dollar rates). Sums exact on both backends (core.db.money_sums), in US dollars."""
    ttx_asset_id = _ttx_asset_id()
    moment = now or timezone.now()
    (holdings,) = money_totals(Wallet.objects.filter(user_id=user_id, asset_id=ttx_asset_id), fields=["balance"])
    as_taker, as_maker = Q(taker_user_id=user_id), Q(maker_user_id=user_id)
    recent = Trade.objects.filter(as_taker | as_maker, executed_at__gte=moment - timedelta(days=WINDOW_DAYS))
    paid = Case(When(as_taker, then=F("taker_fee")), default=F("maker_fee"), output_field=MoneyField())
    traded = money_sums(recent.annotate(fee=paid), group_by="market__quote__symbol", fields=["quote_amount", "fee"])
    count = recent.count()
    earned = _revenue_last_30_days(field="holder_share", now=moment)
    rates = currency_usd_rates(currencies={*traded, *earned})
    volume, fees = usd_totals(sums=traded, rates=rates) or (ZERO, ZERO)
    holder_generated = _q8(fees * settings.REVENUE_HOLDER_PERCENTAGE)
    (pool,) = usd_totals(sums=earned, rates=rates) or (ZERO,)
    tier = fee_tier_for(holdings)
    multiplier = multiplier_for(tier=tier)
    supply = settings.TTX_CIRCULATING_SUPPLY
    share = holdings / supply if supply else ZERO
    monthly = _q8(pool * share * multiplier)
    return Impact(
        ttx_holdings=holdings,
        monthly_volume=volume,
        trades_30d=count,
        fees_paid_30d=fees,
        holder_share_generated_30d=holder_generated,
        reserve_share_generated_30d=fees - holder_generated,
        tier=tier,
        next_tier=next((t for t in TIERS if t.threshold > holdings), None),
        revenue_multiplier=multiplier,
        share_of_supply=_share_of_supply(share),
        holder_revenue_30d=pool,
        monthly_earnings=monthly,
        annual_earnings=monthly * MONTHS_PER_YEAR,
    )


@dataclass(frozen=True, slots=True)
class NextTierInsight:
    """What holding the next tier would change, at the pace of the last 30 days."""

    tier: FeeTier
    ttx_needed: Decimal
    revenue_multiplier: Decimal
    monthly_fee_savings: Decimal
    projected_monthly_earnings: Decimal

    kind: ClassVar[str] = "next_tier"

    @property
    def fee_discount(self) -> Decimal:
        return self.tier.discount

    @property
    def projected_annual_earnings(self) -> Decimal:
        return self.projected_monthly_earnings * MONTHS_PER_YEAR


@dataclass(frozen=True, slots=True)
class ContributionInsight:
    """Where the trader's fees of the last 30 days went."""

    fees_paid_30d: Decimal
    holder_share_generated_30d: Decimal
    reserve_share_generated_30d: Decimal

    kind: ClassVar[str] = "your_contribution"


@dataclass(frozen=True, slots=True)
class NoRecentTradesInsight:
    kind: ClassVar[str] = "no_recent_trades"


Insight = NextTierInsight | ContributionInsight | NoRecentTradesInsight


@dataclass(frozen=True, slots=True)
class Insights:
    tier: FeeTier | None
    insights: list[Insight]


def my_insights(*, impact: Impact) -> Insights:
    """What the next tier would change for this trader, and where their fees went: figures
    only, exact; the sentences are the presentation's (flywheel/templatetags/flywheel_text.py,
    the page's and the API's `message` alike)."""
    insights: list[Insight] = []
    current_discount = impact.fee_discount
    monthly_fee_base = _q8(impact.fees_paid_30d / (1 - current_discount)) if current_discount < 1 else ZERO
    next_tier = impact.next_tier
    supply = settings.TTX_CIRCULATING_SUPPLY
    if next_tier is not None:
        next_multiplier = multiplier_for(tier=next_tier)
        next_share = next_tier.threshold / supply if supply else ZERO
        insights.append(
            NextTierInsight(
                tier=next_tier,
                ttx_needed=next_tier.threshold - impact.ttx_holdings,
                revenue_multiplier=next_multiplier,
                monthly_fee_savings=_q8(monthly_fee_base * (next_tier.discount - current_discount)),
                projected_monthly_earnings=_q8(impact.holder_revenue_30d * next_share * next_multiplier),
            )
        )
    if impact.monthly_volume == 0:
        insights.append(NoRecentTradesInsight())
    else:
        insights.append(
            ContributionInsight(
                fees_paid_30d=impact.fees_paid_30d,
                holder_share_generated_30d=impact.holder_share_generated_30d,
                reserve_share_generated_30d=impact.reserve_share_generated_30d,
            )
        )
    return Insights(tier=impact.tier, insights=insights)
