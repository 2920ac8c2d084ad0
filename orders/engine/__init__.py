"""The matching engine: pure functions over value objects, no Django, no clock, no I/O.

Services load the book and the market, call `match`, and apply the `MatchResult`."""

from orders.engine.fees import (
    TIERS,
    FeeTier,
    buy_lock_amount,
    calculate_fee,
    fee_discount_for,
    fee_tier_for,
    market_buy_lock_amount,
)
from orders.engine.matching import match
from orders.engine.money import (
    AMOUNT_PLACES,
    AMOUNT_QUANTUM,
    affordable_quantity,
    ceil_to_tick,
    floor_to_step,
    floor_to_tick,
    is_multiple_of,
    notional_of,
    quantize_down,
    quantize_up,
)
from orders.engine.pricing import house_price, slippage_limit, within_limit
from orders.engine.stops import StopOrderType, stop_triggered
from orders.engine.types import (
    ExpiryReason,
    Fill,
    HouseInventory,
    MarketRules,
    MatchResult,
    Outcome,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TakerOrder,
    TimeInForce,
)

__all__ = [
    "AMOUNT_PLACES",
    "AMOUNT_QUANTUM",
    "TIERS",
    "ExpiryReason",
    "FeeTier",
    "Fill",
    "HouseInventory",
    "MarketRules",
    "MatchResult",
    "Outcome",
    "RestingOrder",
    "SelfTradePrevention",
    "Side",
    "StopOrderType",
    "TakerOrder",
    "TimeInForce",
    "affordable_quantity",
    "buy_lock_amount",
    "calculate_fee",
    "ceil_to_tick",
    "fee_discount_for",
    "fee_tier_for",
    "floor_to_step",
    "floor_to_tick",
    "house_price",
    "is_multiple_of",
    "market_buy_lock_amount",
    "match",
    "notional_of",
    "quantize_down",
    "quantize_up",
    "slippage_limit",
    "stop_triggered",
    "within_limit",
]
