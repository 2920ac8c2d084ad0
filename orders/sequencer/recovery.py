"""Rebuilding a market's book from the database: at engine start, after a takeover, and
whenever a batch failed after changing memory (the database is the truth: a batch that did
not commit left nothing there, so reloading undoes it in memory too)."""

from __future__ import annotations

from django.conf import settings

from orders.engine.book import LiveOrder
from orders.engine.market import HouseSettings, MarketEngine, MarketSpec, TradingRules
from orders.engine.settlement import FeeRates
from orders.engine.types import LIVE_STATUSES, OrderStatus, OrderType, SelfTradePrevention, Side, TimeInForce
from orders.models import Market, Order
from orders.system_accounts import fee_account_user_id, house_user_id

_LIVE_FIELDS = (
    "id",
    "user_id",
    "side",
    "type",
    "time_in_force",
    "stp",
    "price",
    "stop_price",
    "quantity",
    "filled_quantity",
    "quote_filled",
    "fee_paid",
    "locked_amount",
    "status",
    "status_reason",
    "client_order_id",
    "request_fingerprint",
    "created_at",
    "updated_at",
    "triggered_at",
)


def trading_rules() -> TradingRules:
    return TradingRules(
        rates=FeeRates(taker_bps=settings.TAKER_FEE_BPS, maker_bps=settings.MAKER_FEE_BPS),
        max_slippage_bps=settings.MAX_MARKET_SLIPPAGE_BPS,
        house=HouseSettings(
            enabled=settings.AUTO_FILL_ENABLED,
            max_notional=settings.MAX_AUTO_FILL_USD,
            slippage_percent=settings.AUTO_FILL_SLIPPAGE_PERCENT,
        ),
        house_user_id=house_user_id(),
        fee_user_id=fee_account_user_id(),
    )


def market_spec(market: Market) -> MarketSpec:
    return MarketSpec(
        id=market.pk,
        symbol=market.symbol,
        base_id=market.base_id,
        quote_id=market.quote_id,
        price_tick=market.price_tick,
        quantity_step=market.quantity_step,
        min_quantity=market.min_quantity,
        reference_price=market.reference_price,
        last_price=market.last_price,
        is_active=market.is_active,
    )


def market_engine_load(*, market: Market, rules: TradingRules) -> MarketEngine:
    """The market with its live orders (resting and pending stops) read in id order: the
    book's time priority is the id order."""
    engine = MarketEngine(spec=market_spec(market), rules=rules)
    rows = (
        Order.objects.filter(market_id=market.pk, status__in=[status.value for status in LIVE_STATUSES])
        .order_by("id")
        .values_list(*_LIVE_FIELDS)
    )
    for row in rows.iterator(chunk_size=5000):
        values = dict(zip(_LIVE_FIELDS, row, strict=True))
        engine.restore(
            LiveOrder(
                seq=values["id"],
                id=values["id"],
                user_id=values["user_id"],
                market_id=market.pk,
                side=Side(values["side"]),
                type=OrderType(values["type"]),
                time_in_force=TimeInForce(values["time_in_force"]),
                stp=SelfTradePrevention(values["stp"]),
                price=values["price"],
                stop_price=values["stop_price"],
                quantity=values["quantity"],
                filled_quantity=values["filled_quantity"],
                quote_filled=values["quote_filled"],
                fee_paid=values["fee_paid"],
                locked_amount=values["locked_amount"],
                status=OrderStatus(values["status"]),
                status_reason=values["status_reason"],
                client_order_id=values["client_order_id"],
                request_fingerprint=values["request_fingerprint"],
                created_at=values["created_at"],
                updated_at=values["updated_at"],
                triggered_at=values["triggered_at"],
            )
        )
    return engine
