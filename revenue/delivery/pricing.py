"""The USD -> wei price of a batch, and the bound that keeps a mistyped reference price
from paying the reserve many times what it is owed.

The price is the reference price of DELIVERY_PRICE_MARKET (ETH-USDT). It is trusted only
within DELIVERY_PRICE_MAX_DEVIATION of an anchor: the median of the market's last
DELIVERY_PRICE_TRADES trades of the last DELIVERY_PRICE_MAX_AGE_SECONDS, or, with no such
trade, the price of the last batch built in that window. With neither (a new platform)
the reference price is used as it is. Outside the bound delivery pauses
(``price_out_of_bounds``) until the price or the trades agree again.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings

from orders.models import Market, Trade
from revenue.chain.errors import OperatorFault, PauseCause
from revenue.models import DeliveryBatch


@dataclass(frozen=True, slots=True)
class PriceAnchor:
    price: Decimal
    source: str  # "trades" or "last batch"


def price_within(*, price: Decimal, anchor: Decimal, max_deviation: Decimal) -> bool:
    """|price - anchor| <= max_deviation x anchor (pure: property-tested directly)."""
    if price <= 0 or anchor <= 0:
        return False
    return abs(price - anchor) <= max_deviation * anchor


def price_anchor(*, now: datetime) -> PriceAnchor | None:
    since = now - timedelta(seconds=settings.DELIVERY_PRICE_MAX_AGE_SECONDS)
    prices = list(
        Trade.objects.filter(market__symbol=settings.DELIVERY_PRICE_MARKET, executed_at__gte=since)
        .order_by("-id")
        .values_list("price", flat=True)[: settings.DELIVERY_PRICE_TRADES]
    )
    if prices:
        return PriceAnchor(price=Decimal(statistics.median(prices)), source="trades")
    last = (
        DeliveryBatch.objects.filter(foreign=False, submitted_at__gte=since, eth_usd_price__isnull=False)
        .order_by("-pk")
        .values_list("eth_usd_price", flat=True)
        .first()
    )
    return PriceAnchor(price=Decimal(last), source="last batch") if last is not None else None


def delivery_price_checked(*, now: datetime) -> Decimal:
    """USD per ETH for the next batch; raises OperatorFault when there is none or it is
    outside the bound."""
    reference = (
        Market.objects.filter(symbol=settings.DELIVERY_PRICE_MARKET).values_list("reference_price", flat=True).first()
    )
    if reference is None or reference <= 0:
        raise OperatorFault(
            PauseCause.PRICE_UNAVAILABLE,
            f"no {settings.DELIVERY_PRICE_MARKET} reference price to convert holder shares",
        )
    price = Decimal(reference)
    anchor = price_anchor(now=now)
    deviation = Decimal(settings.DELIVERY_PRICE_MAX_DEVIATION)
    if anchor is not None and not price_within(price=price, anchor=anchor.price, max_deviation=deviation):
        raise OperatorFault(
            PauseCause.PRICE_OUT_OF_BOUNDS,
            f"{settings.DELIVERY_PRICE_MARKET} reference price {price} is more than {deviation:%} away from "
            f"{anchor.price} ({anchor.source})",
        )
    return price
