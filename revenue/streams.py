"""The fixed revenue streams (ids 0-9) and their monthly targets in USD."""

from __future__ import annotations

from decimal import Decimal

TRADING_FEES = 0
WITHDRAWAL_FEES = 1
MARKET_MAKING = 4

# The streams something on the platform feeds today (revenue.services: fees of every trade, the
# house's spread). The others are planned features: pages mark them "not live".
LIVE_STREAMS: frozenset[int] = frozenset({TRADING_FEES, MARKET_MAKING})

STREAMS: tuple[tuple[int, str, str, Decimal], ...] = (
    (0, "Trading Fees", "Maker and taker fees on every trade.", Decimal("250000")),
    (1, "Withdrawal Fees", "Flat and percentage fees on withdrawals.", Decimal("40000")),
    (2, "Premium Subscriptions", "Monthly plans for advanced tools.", Decimal("30000")),
    (3, "API Licensing", "Commercial access to market data and trading APIs.", Decimal("20000")),
    (4, "Market Making", "The house's spread on auto-filled market orders.", Decimal("50000")),
    (5, "Lending Interest", "Interest margin on margin lending.", Decimal("35000")),
    (6, "Staking Commissions", "Commission on staking rewards.", Decimal("25000")),
    (7, "Copy Trading Fees", "Share of profits on copied strategies.", Decimal("15000")),
    (8, "White Label Licensing", "Licences of the platform to partners.", Decimal("60000")),
    (9, "Token Appreciation", "Realised gains on the treasury's TTX.", Decimal("10000")),
)
