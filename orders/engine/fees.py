"""Trading fees, TTX holder discounts and the funds a buy order must lock."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orders.engine.money import (
    ONE,
    ZERO,
    exact_arithmetic,
    quantize_down,
    quantize_up,
    require_bps,
    require_decimal,
)
from orders.engine.pricing import slippage_limit
from orders.engine.types import Side

_BPS_PER_UNIT = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class FeeTier:
    """Holding at least `threshold` TTX earns `discount` (a fraction) off trading fees."""

    name: str
    threshold: Decimal
    discount: Decimal


# Ascending by threshold; the highest tier reached applies.
TIERS: tuple[FeeTier, ...] = (
    FeeTier(name="bronze", threshold=Decimal(100), discount=Decimal("0.10")),
    FeeTier(name="silver", threshold=Decimal(1_000), discount=Decimal("0.20")),
    FeeTier(name="gold", threshold=Decimal(10_000), discount=Decimal("0.35")),
    FeeTier(name="platinum", threshold=Decimal(100_000), discount=Decimal("0.50")),
    FeeTier(name="diamond", threshold=Decimal(1_000_000), discount=Decimal("0.70")),
)


def fee_tier_for(ttx_holdings: Decimal) -> FeeTier | None:
    """The tier earned by `ttx_holdings`, or None below the first threshold."""
    require_decimal(ttx_holdings, name="ttx_holdings")
    reached = [tier for tier in TIERS if ttx_holdings >= tier.threshold]
    return reached[-1] if reached else None


def fee_discount_for(ttx_holdings: Decimal) -> Decimal:
    """Fraction of the fee waived for a payer holding `ttx_holdings` TTX."""
    tier = fee_tier_for(ttx_holdings)
    return ZERO if tier is None else tier.discount


def calculate_fee(*, notional: Decimal, fee_bps: int | Decimal, discount: Decimal = ZERO) -> Decimal:
    """notional * bps / 10000 * (1 - discount), rounded DOWN to 8 dp.

    Rounding down makes fees sub-additive (sum of floors <= floor of the sum), so a
    fee locked for a whole order always covers the fees of its individual fills."""
    require_decimal(notional, name="notional")
    require_decimal(discount, name="discount")
    if notional < 0:
        raise ValueError("notional must not be negative")
    bps = require_bps(fee_bps, name="fee_bps")
    if not ZERO <= discount <= ONE:
        raise ValueError("discount must be between 0 and 1")
    with exact_arithmetic():
        return quantize_down(notional * bps / _BPS_PER_UNIT * (ONE - discount))


def buy_lock_amount(*, quantity: Decimal, price: Decimal, taker_fee_bps: int | Decimal) -> Decimal:
    """Quote to lock for buying `quantity` at up to `price`, taker fee included.

    Assumes the full (undiscounted) taker fee, which is at least any maker fee or
    discounted fee actually charged later."""
    require_decimal(quantity, name="quantity")
    require_decimal(price, name="price")
    if quantity <= 0 or price <= 0:
        raise ValueError("quantity and price must be positive")
    with exact_arithmetic():
        # Rounded up so the lock covers the exact notional of any split into fills.
        notional = quantize_up(quantity * price)
    return notional + calculate_fee(notional=notional, fee_bps=taker_fee_bps)


def market_buy_lock_amount(
    *, quantity: Decimal, reference_price: Decimal, max_slippage_bps: int, taker_fee_bps: int | Decimal
) -> Decimal:
    """Quote to lock for a market buy: priced at the slippage guard, the worst it can fill at."""
    require_decimal(reference_price, name="reference_price")
    worst_price = quantize_up(
        slippage_limit(side=Side.BUY, reference_price=reference_price, max_slippage_bps=max_slippage_bps)
    )
    return buy_lock_amount(quantity=quantity, price=worst_price, taker_fee_bps=taker_fee_bps)
