"""Published spot fee levels of other venues (entry tier, no token discount), as data.
Basis points: 1 bp = 0.01 %."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Competitor:
    key: str
    name: str
    kind: str
    maker_fee_bps: Decimal
    taker_fee_bps: Decimal
    note: str


COMPETITORS: dict[str, Competitor] = {
    c.key: c
    for c in (
        Competitor(
            "binance",
            "Binance",
            "centralized exchange",
            Decimal(10),
            Decimal(10),
            "Spot, regular user (VIP 0): 0.10% maker / 0.10% taker.",
        ),
        Competitor(
            "uniswap",
            "Uniswap",
            "decentralized exchange",
            Decimal(30),
            Decimal(30),
            "v2-style pools: 0.30% swap fee paid by the trader; no maker role.",
        ),
        Competitor(
            "cryptocom",
            "Crypto.com Exchange",
            "centralized exchange",
            Decimal("7.5"),
            Decimal("7.5"),
            "Spot, level 1: 0.075% maker / 0.075% taker.",
        ),
        Competitor(
            "coinbase",
            "Coinbase Advanced",
            "centralized exchange",
            Decimal(40),
            Decimal(60),
            "Spot, lowest volume tier: 0.40% maker / 0.60% taker.",
        ),
        Competitor(
            "kraken",
            "Kraken Pro",
            "centralized exchange",
            Decimal(25),
            Decimal(40),
            "Spot, lowest volume tier: 0.25% maker / 0.40% taker.",
        ),
    )
}
