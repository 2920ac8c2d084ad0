"""The platform's own accounts in the same ledger as traders: the house (inventory
for auto-fill) and the fee account. They cannot log in."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser


def _system_user(username: str) -> AbstractBaseUser:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


@cache
def house_user_id() -> int:
    return int(_system_user(settings.HOUSE_USERNAME).pk)


@cache
def fee_account_user_id() -> int:
    return int(_system_user(settings.FEE_ACCOUNT_USERNAME).pk)


def system_user_ids() -> set[int]:
    return {house_user_id(), fee_account_user_id()}


def system_accounts_cache_clear() -> None:
    house_user_id.cache_clear()
    fee_account_user_id.cache_clear()
