"""Factories for tests: users, assets, markets, funded wallets."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from orders.models import Asset, Market
from orders.services import deposit_create

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"trader{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    is_superuser = True


def asset_get(symbol: str) -> Asset:
    return Asset.objects.get_or_create(symbol=symbol, defaults={"name": symbol})[0]


def market_create(
    symbol: str = "ETH-USDT",
    *,
    price_tick: str = "0.01",
    quantity_step: str = "0.0001",
    min_quantity: str = "0.0001",
    reference_price: str = "2000.00",
) -> Market:
    base, quote = symbol.split("-")
    market, _ = Market.objects.get_or_create(
        symbol=symbol,
        defaults={
            "base": asset_get(base),
            "quote": asset_get(quote),
            "price_tick": Decimal(price_tick),
            "quantity_step": Decimal(quantity_step),
            "min_quantity": Decimal(min_quantity),
            "reference_price": Decimal(reference_price),
        },
    )
    return market


def fund(user, asset: str, amount: str | Decimal, *, bucket: int = 0) -> None:
    # The ledger's primitive, without the staff credit's rules: tests fund any account and bucket.
    deposit_create(user_id=user.pk, asset=asset_get(asset), amount=Decimal(str(amount)), bucket=bucket)
