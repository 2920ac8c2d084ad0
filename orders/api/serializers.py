"""Output shapes of the trading API. Money is always a decimal string."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from core.api.fields import (
    MomentOutput,
    MoneyOutput,
    MoneySumOutput,
    StrictBooleanField,
    StrictCharField,
    output_shaper,
)
from core.api.inputs import KnownFieldsInput
from orders.engine.requests import amount_received
from orders.engine.types import Counterparty, Liquidity, OrderType, SelfTradePrevention, Side, TimeInForce
from orders.models import Market, Order
from orders.selectors.orders import order_average_price, order_fills


def money(**kwargs: Any) -> MoneyOutput:
    return MoneyOutput(**kwargs)


class MarketOutput(serializers.ModelSerializer):
    base = serializers.CharField(source="base.symbol")
    quote = serializers.CharField(source="quote.symbol")
    price_tick = money()
    quantity_step = money()
    min_quantity = money()
    reference_price = money()
    last_price = money(allow_null=True)

    class Meta:
        model = Market
        fields = [
            "symbol",
            "base",
            "quote",
            "price_tick",
            "quantity_step",
            "min_quantity",
            "reference_price",
            "last_price",
        ]


class WalletOutput(serializers.Serializer):
    asset = serializers.CharField()
    balance = money()
    available = money()
    locked = money()


class LedgerAssetOutput(serializers.Serializer):
    asset = serializers.CharField()
    credited = money()
    balances = money()
    balanced = serializers.BooleanField()


@extend_schema_serializer(component_name="Ledger")
class LedgerOutput(serializers.Serializer):
    # Reads orders.selectors.ledger.Ledger.

    balanced = serializers.BooleanField()
    assets = LedgerAssetOutput(many=True)


@extend_schema_field({"oneOf": [{"type": "string", "example": "1.5"}, {"type": "number"}]})
class AmountInput(serializers.Field):
    """A decimal given as a string or a number; parsed and checked against the market
    by the service (nothing is rounded here)."""

    default_error_messages = {"invalid": "Must be a decimal number, as a string or a number."}

    def to_internal_value(self, data: object) -> object:
        try:
            return amount_received(data)
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value: object) -> object:
        return value


class CreditInput(KnownFieldsInput):
    username = serializers.CharField(max_length=150)
    asset = serializers.CharField(max_length=16)
    amount = AmountInput()
    reason = serializers.CharField(
        required=False,
        max_length=500,
        help_text="Why the credit is made (optional; kept on the deposit, the audit trail). Blank is refused: "
        "leave it out.",
    )


class ReferencePriceInput(KnownFieldsInput):
    price = AmountInput()
    large_move = StrictBooleanField(
        required=False,
        default=False,
        help_text="Confirms a price more than REFERENCE_PRICE_MAX_MOVE_PERCENT (50%) away from both the "
        "reference and the last price (refused otherwise: 400 invalid_price).",
    )
    reason = serializers.CharField(
        required=False,
        max_length=500,
        help_text="Why the price is set (optional; kept in the market's History, the audit trail). Blank is "
        "refused: leave it out.",
    )


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "limit buy",
            value={"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.5", "price": "1990.00"},
            request_only=True,
        ),
        OpenApiExample(
            "market sell FOK",
            value={"market": "ETH-USDT", "side": "sell", "type": "market", "quantity": "0.1", "time_in_force": "FOK"},
            request_only=True,
        ),
    ]
)
class OrderInput(KnownFieldsInput):
    market = StrictCharField(max_length=33)
    side = serializers.ChoiceField(choices=[side.value for side in Side])
    type = serializers.ChoiceField(choices=[kind.value for kind in OrderType])
    quantity = AmountInput()
    price = AmountInput(required=False, allow_null=True)
    stop_price = AmountInput(required=False, allow_null=True)
    time_in_force = serializers.ChoiceField(choices=[tif.value for tif in TimeInForce], required=False, allow_null=True)
    client_order_id = StrictCharField(
        max_length=64, min_length=1, required=False, allow_null=True, trim_whitespace=False
    )
    stp = serializers.ChoiceField(choices=[stp.value for stp in SelfTradePrevention], required=False, allow_null=True)


class CancelAllInput(KnownFieldsInput):
    market = StrictCharField(max_length=33, required=False, allow_null=True)


class FillOutput(serializers.Serializer):
    trade_id = serializers.CharField(source="trade.pk")
    price = money(source="trade.price")
    quantity = money(source="trade.quantity")
    fee = money()
    liquidity = serializers.ChoiceField(choices=[part.value for part in Liquidity])
    counterparty = serializers.ChoiceField(choices=[other.value for other in Counterparty])


class OrderEventOutput(serializers.Serializer):
    status = serializers.CharField()
    reason = serializers.CharField(allow_null=True)
    at = MomentOutput()


class OrderOutput(serializers.Serializer):
    id = serializers.CharField(source="pk")
    client_order_id = serializers.CharField(allow_null=True)
    market = serializers.CharField(source="market.symbol")
    side = serializers.CharField()
    type = serializers.CharField()
    time_in_force = serializers.CharField()
    stp = serializers.CharField()
    price = money(allow_null=True)
    stop_price = money(allow_null=True)
    quantity = money()
    filled_quantity = money()
    remaining_quantity = money()
    average_price = serializers.SerializerMethodField()
    fee_paid = MoneySumOutput(help_text="Sum of the fills' fees: can pass an amount's 22 integer digits.")
    status = serializers.CharField()
    status_reason = serializers.CharField(allow_null=True)
    created_at = MomentOutput()
    updated_at = MomentOutput()
    filled_at = MomentOutput(allow_null=True)
    cancelled_at = MomentOutput(allow_null=True)
    fills = serializers.SerializerMethodField()
    events = OrderEventOutput(many=True)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_average_price(self, order: Order) -> str | None:
        average = order_average_price(order=order)
        return None if average is None else f"{average:f}"

    @extend_schema_field(FillOutput(many=True))
    def get_fills(self, order: Order) -> list[dict[str, Any]]:
        return [fill_output(fill) for fill in order_fills(order=order)]


fill_output = output_shaper(FillOutput)
# One order's answer (API, pages' JSON, the engine's cancels) through OrderOutput's fields.
order_output = output_shaper(OrderOutput)


class CancelAllOutput(serializers.Serializer):
    cancelled = OrderOutput(many=True)


class UserTradeOutput(serializers.Serializer):
    trade_id = serializers.CharField()
    order_id = serializers.CharField()
    market = serializers.CharField()
    side = serializers.CharField()
    price = money()
    quantity = money()
    fee = money()
    liquidity = serializers.CharField()
    executed_at = MomentOutput()


class BookLevelOutput(serializers.Serializer):
    price = money()
    quantity = MoneySumOutput()
    orders = serializers.IntegerField()


class BookOutput(serializers.Serializer):
    symbol = serializers.CharField()
    bids = BookLevelOutput(many=True)
    asks = BookLevelOutput(many=True)


class MarketTradeOutput(serializers.Serializer):
    id = serializers.CharField(source="pk")
    price = money()
    quantity = money()
    taker_side = serializers.CharField()
    executed_at = MomentOutput()


class CandleOutput(serializers.Serializer):
    time = MomentOutput()
    open = money()
    high = money()
    low = money()
    close = money()
    volume = MoneySumOutput()
