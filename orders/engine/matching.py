"""Price-time matching of one incoming order against the opposite side of the book.

Pure: the book, the market rules and the house inventory come in as arguments and a
`MatchResult` comes out; applying it (ledger, book, events) is the caller's job."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from orders.engine.money import (
    ZERO,
    affordable_quantity,
    exact_arithmetic,
    floor_to_step,
    is_multiple_of,
    require_decimal,
)
from orders.engine.pricing import house_price, slippage_limit, within_limit
from orders.engine.types import (
    ExpiryReason,
    Fill,
    HouseInventory,
    MarketRules,
    MatchResult,
    Outcome,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TakerOrder,
    TimeInForce,
)


@dataclass(frozen=True, slots=True)
class _Walk:
    """The simulated walk; FOK discards it when incomplete, everything else keeps it."""

    fills: tuple[Fill, ...]
    expired_maker_ids: tuple[int, ...]
    remaining: Decimal
    stopped_by_stp: bool
    liquidity_beyond_guard: bool
    makers_examined: int


# The last rules object found valid (immutable: it stays valid); held, so its id cannot be reused.
_rules_validated: MarketRules | None = None


def match(*, taker: TakerOrder, makers: Iterable[RestingOrder], rules: MarketRules) -> MatchResult:
    """Match `taker` against `makers` (opposite side, best price first, then oldest).

    `makers` may be a lazy iterator; it is consumed only as far as the match needs, plus
    a peek beyond a market order's guard: a market remainder expires for `slippage_guard`
    when someone else's order lies beyond the guard (own orders never count as liquidity),
    else for `no_liquidity`. Invalid input raises ValueError (TypeError for floats)."""
    global _rules_validated
    if rules is not _rules_validated:  # the engine passes one object while its market is unchanged
        _validate_rules(rules=rules)
        _rules_validated = rules
    taker = _normalized(taker)
    _validate_taker(taker=taker, rules=rules)
    with exact_arithmetic():
        walk = _walk(taker=taker, makers=makers, rules=rules)
        return _result(taker=taker, walk=walk)


def _walk(*, taker: TakerOrder, makers: Iterable[RestingOrder], rules: MarketRules) -> _Walk:
    side = taker.side
    stp = taker.stp
    is_market = taker.limit_price is None
    limit = (
        slippage_limit(side=side, reference_price=rules.reference_price, max_slippage_bps=rules.max_slippage_bps)
        if taker.limit_price is None
        else taker.limit_price
    )

    remaining = taker.quantity
    fills: list[Fill] = []
    expired_maker_ids: list[int] = []
    examined = 0
    stopped_by_stp = False
    liquidity_beyond_guard = False
    previous_price: Decimal | None = None

    # A for loop pulls one maker at a time, so `break` is what keeps a lazy,
    # paginated book from being read further than needed.
    for maker in makers:
        examined += 1
        _validate_maker(maker=maker, side=side, previous_price=previous_price)
        previous_price = maker.price
        is_own = maker.owner_id == taker.owner_id

        if not within_limit(side=side, price=maker.price, limit=limit):
            if is_market and is_own:
                # Own orders are never liquidity for this taker; keep peeking (everything
                # further is beyond the guard too) to learn whether anyone else's is.
                continue
            liquidity_beyond_guard = is_market
            break

        if is_own:
            if stp in (SelfTradePrevention.EXPIRE_MAKER, SelfTradePrevention.EXPIRE_BOTH):
                expired_maker_ids.append(maker.id)
            if stp in (SelfTradePrevention.EXPIRE_TAKER, SelfTradePrevention.EXPIRE_BOTH):
                stopped_by_stp = True
                break
            continue  # skip and expire_maker move on to the next maker

        quantity = min(remaining, maker.remaining)
        fills.append(Fill(maker_id=maker.id, maker_owner_id=maker.owner_id, price=maker.price, quantity=quantity))
        remaining -= quantity
        if remaining == 0:
            break

    if is_market and not stopped_by_stp and remaining > 0 and rules.house is not None:
        house_fill = _house_fill(side=side, remaining=remaining, limit=limit, rules=rules, house=rules.house)
        if house_fill is not None:
            fills.append(house_fill)
            remaining -= house_fill.quantity

    return _Walk(
        fills=tuple(fills),
        expired_maker_ids=tuple(expired_maker_ids),
        remaining=remaining,
        stopped_by_stp=stopped_by_stp,
        liquidity_beyond_guard=liquidity_beyond_guard,
        makers_examined=examined,
    )


def _house_fill(
    *, side: Side, remaining: Decimal, limit: Decimal, rules: MarketRules, house: HouseInventory
) -> Fill | None:
    price = house_price(
        side=side,
        reference_price=rules.reference_price,
        slippage_percent=house.slippage_percent,
        price_tick=rules.price_tick,
    )
    if price <= 0 or not within_limit(side=side, price=price, limit=limit):
        return None
    if house.taker_side_best is not None and within_limit(side=side, price=price, limit=house.taker_side_best):
        return None  # the book's own side would take it back at that price or better
    step = rules.quantity_step
    by_notional = affordable_quantity(budget=house.max_notional, price=price, step=step)
    if side is Side.BUY:
        # The house sells base to a buying taker ...
        by_inventory = floor_to_step(house.base_available, step=step)
    else:
        # ... and pays quote to a selling one.
        by_inventory = affordable_quantity(budget=house.quote_available, price=price, step=step)
    quantity = min(remaining, by_notional, by_inventory)
    if quantity <= 0:
        return None
    return Fill(maker_id=None, maker_owner_id=None, price=price, quantity=quantity)


def _result(*, taker: TakerOrder, walk: _Walk) -> MatchResult:
    if walk.remaining == 0:
        return _kept(taker=taker, walk=walk, outcome=Outcome.FILLED, reason=None)
    if taker.time_in_force is TimeInForce.FOK:
        # All or nothing: the walk was only a simulation, so nothing of it happens.
        return MatchResult(
            fills=(),
            expired_maker_ids=(),
            outcome=Outcome.EXPIRED,
            reason=ExpiryReason.FOK_NOT_FILLABLE,
            filled_quantity=ZERO,
            remaining_quantity=taker.quantity,
            makers_examined=walk.makers_examined,
        )
    if walk.stopped_by_stp:
        return _kept(taker=taker, walk=walk, outcome=Outcome.EXPIRED, reason=ExpiryReason.SELF_TRADE_PREVENTION)
    if taker.limit_price is None:
        reason = ExpiryReason.SLIPPAGE_GUARD if walk.liquidity_beyond_guard else ExpiryReason.NO_LIQUIDITY
        return _kept(taker=taker, walk=walk, outcome=Outcome.EXPIRED, reason=reason)
    if taker.time_in_force is TimeInForce.GTC:
        return _kept(taker=taker, walk=walk, outcome=Outcome.REST, reason=None)
    return _kept(taker=taker, walk=walk, outcome=Outcome.EXPIRED, reason=ExpiryReason.IOC_REMAINDER)


def _kept(*, taker: TakerOrder, walk: _Walk, outcome: Outcome, reason: ExpiryReason | None) -> MatchResult:
    return MatchResult(
        fills=walk.fills,
        expired_maker_ids=walk.expired_maker_ids,
        outcome=outcome,
        reason=reason,
        filled_quantity=taker.quantity - walk.remaining,
        remaining_quantity=walk.remaining,
        makers_examined=walk.makers_examined,
    )


def _validate_rules(*, rules: MarketRules) -> None:
    if require_decimal(rules.reference_price, name="reference_price") <= 0:
        raise ValueError("reference_price must be positive")
    if require_decimal(rules.price_tick, name="price_tick") <= 0:
        raise ValueError("price_tick must be positive")
    if require_decimal(rules.quantity_step, name="quantity_step") <= 0:
        raise ValueError("quantity_step must be positive")
    # bool is an int subclass; True basis points is a bug, not a setting.
    if not isinstance(rules.max_slippage_bps, int) or isinstance(rules.max_slippage_bps, bool):
        raise TypeError("max_slippage_bps must be an int")
    if rules.max_slippage_bps < 0:
        raise ValueError("max_slippage_bps must not be negative")
    house = rules.house
    if house is not None:
        for name in ("base_available", "quote_available", "max_notional", "slippage_percent"):
            if require_decimal(getattr(house, name), name=f"house.{name}") < 0:
                raise ValueError(f"house.{name} must not be negative")
        best = house.taker_side_best
        if best is not None and require_decimal(best, name="house.taker_side_best") <= 0:
            raise ValueError("house.taker_side_best must be positive")


def _normalized(taker: TakerOrder) -> TakerOrder:
    """Coerce plain strings (e.g. Django choice values) to the enums; unknown values raise ValueError."""
    if type(taker.side) is Side and type(taker.time_in_force) is TimeInForce and type(taker.stp) is SelfTradePrevention:
        return taker  # the engine's own orders: already enums (a copy per order was 3% of its CPU)
    return replace(
        taker,
        side=Side(taker.side),
        time_in_force=TimeInForce(taker.time_in_force),
        stp=SelfTradePrevention(taker.stp),
    )


def _validate_taker(*, taker: TakerOrder, rules: MarketRules) -> None:
    quantity = require_decimal(taker.quantity, name="quantity")
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    if not is_multiple_of(quantity, unit=rules.quantity_step):
        # Off-step quantities would produce off-step fills and remainders.
        raise ValueError(f"quantity {quantity} is not a multiple of the step {rules.quantity_step}")
    if taker.limit_price is None:
        if taker.time_in_force is TimeInForce.GTC:
            raise ValueError("a market order cannot rest: GTC is invalid, use IOC or FOK")
    elif require_decimal(taker.limit_price, name="limit_price") <= 0:
        raise ValueError("limit_price must be positive")


def _validate_maker(*, maker: RestingOrder, side: Side, previous_price: Decimal | None) -> None:
    if require_decimal(maker.price, name="maker.price") <= 0:
        raise ValueError(f"maker {maker.id} has a non-positive price")
    if require_decimal(maker.remaining, name="maker.remaining") <= 0:
        raise ValueError(f"maker {maker.id} has nothing remaining")
    if previous_price is None:
        return
    # A book out of priority order would silently trade at the wrong prices.
    out_of_order = maker.price < previous_price if side is Side.BUY else maker.price > previous_price
    if out_of_order:
        raise ValueError(f"makers are not in priority order at maker {maker.id}")
