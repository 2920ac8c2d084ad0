"""Output shapes of the trading API. Money is always a decimal string."""

from __future__ import annotations

from rest_framework import serializers

from orders.models import Market


def money(**kwargs: object) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=30, decimal_places=8, coerce_to_string=True, **kwargs)  # type: ignore[arg-type]


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


class CreditInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    asset = serializers.CharField(max_length=16)
    amount = serializers.JSONField()


class ReferencePriceInput(serializers.Serializer):
    price = serializers.JSONField()


class LedgerAssetOutput(serializers.Serializer):
    asset = serializers.CharField()
    credited = money()
    balances = money()
    balanced = serializers.BooleanField()
