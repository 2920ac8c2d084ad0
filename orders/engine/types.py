"""Value objects of the matching engine: plain, immutable, free of Django."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from orders.engine.money import notional_of


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return _OPPOSITE[self]  # a member looked up on its class costs more than the dictionary


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class SelfTradePrevention(StrEnum):
    SKIP = "skip"
    EXPIRE_TAKER = "expire_taker"
    EXPIRE_MAKER = "expire_maker"
    EXPIRE_BOTH = "expire_both"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"

    @property
    def is_stop(self) -> bool:
        return self in _STOP_TYPES

    @property
    def executes_as_market(self) -> bool:
        return self is not _LIMIT


# Read by the properties above a few times per order (module constants: an enum's member
# looked up on its class took longer than the rest of each property).
_OPPOSITE = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}
_STOP_TYPES = frozenset({OrderType.STOP_LOSS, OrderType.TAKE_PROFIT})
_LIMIT = OrderType.LIMIT


class OrderStatus(StrEnum):
    PENDING_TRIGGER = "pending_trigger"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    ERROR = "error"

    @property
    def is_live(self) -> bool:
        return self in LIVE_STATUSES


RESTING_STATUSES = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
LIVE_STATUSES = (OrderStatus.PENDING_TRIGGER, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
TERMINAL_STATUSES = (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.ERROR)


class Outcome(StrEnum):
    FILLED = "filled"
    REST = "rest"
    EXPIRED = "expired"


class Liquidity(StrEnum):
    """An order's part in one of its trades: it took liquidity, or its resting order made it."""

    TAKER = "taker"
    MAKER = "maker"


class Counterparty(StrEnum):
    """Whom a fill traded with: a resting order of the book, or the house's inventory."""

    BOOK = "book"
    HOUSE = "house"


class ExpiryReason(StrEnum):
    FOK_NOT_FILLABLE = "fok_not_fillable"
    IOC_REMAINDER = "ioc_remainder"
    NO_LIQUIDITY = "no_liquidity"
    SELF_TRADE_PREVENTION = "self_trade_prevention"
    SLIPPAGE_GUARD = "slippage_guard"


@dataclass(frozen=True, slots=True)
class RestingOrder:
    """A maker on the opposite side of the book, as the engine needs to see it."""

    id: int
    owner_id: int
    price: Decimal
    remaining: Decimal


@dataclass(frozen=True, slots=True)
class TakerOrder:
    """The incoming order; `limit_price=None` makes it a market order."""

    owner_id: int
    side: Side
    quantity: Decimal
    limit_price: Decimal | None
    time_in_force: TimeInForce
    stp: SelfTradePrevention

    @property
    def is_market(self) -> bool:
        return self.limit_price is None


@dataclass(frozen=True, slots=True)
class HouseInventory:
    """What the house may sell (base) or spend (quote) to fill a market taker."""

    base_available: Decimal
    quote_available: Decimal
    max_notional: Decimal  # in the quote asset: MAX_AUTO_FILL_USD converted (pricing.house_max_notional)
    slippage_percent: Decimal
    # The book's best price on the taker's own side (its best bid for a buying taker), if
    # any. The house never fills at a price that one reaches: priced from a stale reference
    # below the book's bids, it would sell what a taker sells straight back to those bids
    # at a profit, as often as its inventory allows (and the reverse for a selling taker).
    taker_side_best: Decimal | None = None


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Everything about the market the engine needs, passed in rather than looked up."""

    reference_price: Decimal
    max_slippage_bps: int
    price_tick: Decimal
    quantity_step: Decimal
    house: HouseInventory | None


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade of the taker against a maker, or against the house (`maker_id=None`)."""

    maker_id: int | None
    maker_owner_id: int | None
    price: Decimal
    quantity: Decimal

    @property
    def is_house(self) -> bool:
        return self.maker_id is None

    @property
    def notional(self) -> Decimal:
        """Quote amount that changes hands, rounded down to 8 dp.

        Rounding down keeps ledger amounts at AMOUNT_PLACES and makes the sum over
        fills never exceed the rounded-up notional locked for the whole order."""
        return notional_of(price=self.price, quantity=self.quantity)


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What happened to the taker; the caller applies it to the ledger and the book."""

    fills: tuple[Fill, ...]
    expired_maker_ids: tuple[int, ...]
    outcome: Outcome
    reason: ExpiryReason | None
    filled_quantity: Decimal
    remaining_quantity: Decimal
    makers_examined: int

    @property
    def house_fill(self) -> Fill | None:
        return next((fill for fill in self.fills if fill.is_house), None)
