"""Money conversions for on-chain delivery."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

WEI_PER_ETH = 10**18


def usd_to_wei(amount_usd: Decimal, *, eth_usd_price: Decimal) -> int:
    """Convert a USD amount to wei at ``eth_usd_price`` (USD per 1 ETH), rounded DOWN.

    ``amount_usd / eth_usd_price`` ETH is computed exactly (no float, no Decimal
    context rounding) and truncated to a whole wei, so the reserve is never paid
    more than is owed: the sub-wei dust stays in the platform's reserve
    accounting (owed minus paid), to be carried by the caller if it wants to.

    Raises ``TypeError`` for floats (binary fractions are not money) and
    ``ValueError`` for a negative or non-finite amount or a non-positive or
    non-finite price.
    """
    for name, value in (("amount_usd", amount_usd), ("eth_usd_price", eth_usd_price)):
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{name} must be finite, got {value}")
    if eth_usd_price <= 0:
        raise ValueError(f"eth_usd_price must be positive, got {eth_usd_price}")
    if amount_usd < 0:
        raise ValueError(f"amount_usd must not be negative, got {amount_usd}")
    wei = Fraction(amount_usd) * WEI_PER_ETH / Fraction(eth_usd_price)
    return math.floor(wei)
