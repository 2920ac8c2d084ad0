"""Start-up checks: settings that would make money paths wrong refuse to start.

Tagged PLATFORM_SETTINGS: a process that skips Django's own checks to start fast (the
matching engine: manage.py engine) still runs these."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from core.networks import networks_parse

PLATFORM_SETTINGS = "platform_settings"


@register(PLATFORM_SETTINGS)
def revenue_split_check(app_configs: Any, **kwargs: Any) -> list[Error]:
    holder = settings.REVENUE_HOLDER_PERCENTAGE
    reserve = settings.REVENUE_RESERVE_PERCENTAGE
    errors = []
    for name, value in (("REVENUE_HOLDER_PERCENTAGE", holder), ("REVENUE_RESERVE_PERCENTAGE", reserve)):
        if not isinstance(value, Decimal) or not Decimal(0) <= value <= Decimal(1):
            errors.append(Error(f"{name} must be a decimal in [0, 1], got {value!r}.", id="core.E001"))
    if not errors and holder + reserve != Decimal(1):
        errors.append(Error(f"The revenue split must sum to 1, got {holder} + {reserve}.", id="core.E002"))
    return errors


@register(PLATFORM_SETTINGS)
def trading_settings_check(app_configs: Any, **kwargs: Any) -> list[Error]:
    errors = []
    for name in ("MAKER_FEE_BPS", "TAKER_FEE_BPS", "MAX_MARKET_SLIPPAGE_BPS"):
        value = getattr(settings, name)
        if not 0 <= value <= 10_000:
            errors.append(Error(f"{name} must be between 0 and 10000 basis points.", id="core.E003"))
    if settings.MAKER_FEE_BPS > settings.TAKER_FEE_BPS:
        # Resting buy orders lock the taker fee; a higher maker fee could exceed the lock.
        errors.append(Error("MAKER_FEE_BPS may not exceed TAKER_FEE_BPS.", id="core.E004"))
    return errors


@register(PLATFORM_SETTINGS)
def network_settings_check(app_configs: Any, **kwargs: Any) -> list[Error]:
    errors = []
    for name in ("TRUSTED_PROXIES", "METRICS_ALLOWED_NETWORKS"):
        try:
            networks_parse(tuple(getattr(settings, name)))
        except ValueError as exc:
            errors.append(Error(f"{name} must list IP addresses or CIDR blocks: {exc}", id="core.E005"))
    return errors
