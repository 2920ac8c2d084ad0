"""Property tests: `match` against a deliberately simple reference model, and a random
in-memory exchange that checks conservation of base and quote over order streams.

The reference model shares nothing with the engine but the dataclasses: it works on
Fractions, materialises the whole book and spells every rule out naively."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.engine import (
    ExpiryReason,
    HouseInventory,
    MarketRules,
    Outcome,
    RestingOrder,
    SelfTradePrevention,
    Side,
    TakerOrder,
    TimeInForce,
    calculate_fee,
    match,
)
from orders.engine.money import quantize_up
from orders.engine.settlement import FeeRates
from tests.orders.engine.exchange import TTX, EngineExchange

D = Decimal
# Tick * step reaches 10 decimal places with the finest pair, so notional rounding bites.
TICKS = [D("0.000001"), D("0.01"), D("0.5"), D("1")]
STEPS = [D("0.0001"), D("0.001"), D("0.1"), D("1")]
# Prices are drawn within this many ticks of the reference, so that makers, limits and
# guards often coincide exactly.
PRICE_SPREAD_TICKS = 12
OWNERS = [1, 2, 3]
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the reference model -----------------------------------------------------------------


@dataclass
class Expected:
    fills: list[tuple[int | None, Fraction, Fraction]]
    expired: list[int]
    outcome: Outcome
    reason: ExpiryReason | None
    examined: int


def reference_match(taker: TakerOrder, book: Sequence[RestingOrder], rules: MarketRules) -> Expected:
    buy = taker.side is Side.BUY
    market = taker.limit_price is None
    reference = Fraction(rules.reference_price)
    if market:
        bps = Fraction(rules.max_slippage_bps, 10_000)
        bound = reference * (1 + bps) if buy else reference * (1 - bps)
    else:
        assert taker.limit_price is not None
        bound = Fraction(taker.limit_price)

    def acceptable(price: Fraction) -> bool:
        return price <= bound if buy else price >= bound

    left = Fraction(taker.quantity)
    fills: list[tuple[int | None, Fraction, Fraction]] = []
    expired: list[int] = []
    stp_stop = False
    examined = 0
    for order in book:
        if left == 0 or stp_stop:
            break
        examined += 1
        price = Fraction(order.price)
        mine = order.owner_id == taker.owner_id
        if not acceptable(price):
            if market and mine:
                continue
            break
        if mine:
            if taker.stp is SelfTradePrevention.SKIP:
                continue
            if taker.stp in (SelfTradePrevention.EXPIRE_MAKER, SelfTradePrevention.EXPIRE_BOTH):
                expired.append(order.id)
            if taker.stp in (SelfTradePrevention.EXPIRE_TAKER, SelfTradePrevention.EXPIRE_BOTH):
                stp_stop = True
            continue
        quantity = min(left, Fraction(order.remaining))
        fills.append((order.id, price, quantity))
        left -= quantity

    if market and not stp_stop and left > 0 and rules.house is not None:
        house = rules.house
        tick = Fraction(rules.price_tick)
        step = Fraction(rules.quantity_step)
        spread = Fraction(house.slippage_percent) / 100
        if buy:
            house_price = math.ceil(reference * (1 + spread) / tick) * tick
        else:
            house_price = math.floor(reference * (1 - spread) / tick) * tick
        # The book's own side (its best bid for a buying taker) would take back at that
        # price what the house gave: no house fill then.
        best = house.taker_side_best
        crossed = best is not None and (house_price <= best if buy else house_price >= best)
        if house_price > 0 and acceptable(house_price) and not crossed:
            by_notional = math.floor(Fraction(house.max_notional) / house_price / step) * step
            if buy:
                by_inventory = math.floor(Fraction(house.base_available) / step) * step
            else:
                by_inventory = math.floor(Fraction(house.quote_available) / house_price / step) * step
            capacity = min(left, by_notional, by_inventory)
            if capacity > 0:
                fills.append((None, house_price, capacity))
                left -= capacity

    others_beyond = any(not acceptable(Fraction(order.price)) and order.owner_id != taker.owner_id for order in book)
    if left == 0:
        return Expected(fills, expired, Outcome.FILLED, None, examined)
    if taker.time_in_force is TimeInForce.FOK:
        return Expected([], [], Outcome.EXPIRED, ExpiryReason.FOK_NOT_FILLABLE, examined)
    if stp_stop:
        return Expected(fills, expired, Outcome.EXPIRED, ExpiryReason.SELF_TRADE_PREVENTION, examined)
    if market:
        reason = ExpiryReason.SLIPPAGE_GUARD if others_beyond else ExpiryReason.NO_LIQUIDITY
        return Expected(fills, expired, Outcome.EXPIRED, reason, examined)
    if taker.time_in_force is TimeInForce.GTC:
        return Expected(fills, expired, Outcome.REST, None, examined)
    return Expected(fills, expired, Outcome.EXPIRED, ExpiryReason.IOC_REMAINDER, examined)


# --- strategies --------------------------------------------------------------------------


def amounts(*, scales: Sequence[int]) -> st.SearchStrategy[Decimal]:
    """Non-negative amounts of varied magnitude, deliberately off any step grid."""
    return st.builds(
        lambda scale, thousandths: D(scale) * D(thousandths) / 1000,
        st.sampled_from(scales),
        st.integers(0, 1000),
    )


@st.composite
def market_rules(draw: st.DrawFn, *, with_house: bool | None = None) -> MarketRules:
    tick = draw(st.sampled_from(TICKS))
    step = draw(st.sampled_from(STEPS))
    # The reference need not lie on the tick grid (it may be an index price); when it does,
    # guards such as 100 * 1.01 land exactly on a tick.
    reference = D(draw(st.integers(min_value=50, max_value=150)))
    if draw(st.booleans()):
        reference += D(draw(st.integers(0, 999))) / 1000
    house = None
    if with_house if with_house is not None else draw(st.integers(0, 2)) > 0:
        house = HouseInventory(
            base_available=draw(amounts(scales=[1, 5, 30])),
            quote_available=draw(amounts(scales=[50, 500, 3_000])),
            max_notional=draw(amounts(scales=[50, 500, 3_000])),
            slippage_percent=D(draw(st.sampled_from(["0", "0.1", "0.2", "0.5", "1", "5"]))),
            # The book's best on the taker's side: absent, or about where the house prices.
            taker_side_best=draw(
                st.none() | st.integers(min_value=90, max_value=110).map(lambda p: reference * p / 100)
            ),
        )
    return MarketRules(
        reference_price=reference,
        max_slippage_bps=draw(st.sampled_from([0, 25, 100, 300, 500, 1000])),
        price_tick=tick,
        quantity_step=step,
        house=house,
    )


@st.composite
def scenario(draw: st.DrawFn, *, market_with_house: bool = False) -> tuple[TakerOrder, list[RestingOrder], MarketRules]:
    """A book, a taker and the market; `market_with_house` forces the house-fill path."""
    rules = draw(market_rules(with_house=True if market_with_house else None))
    side = draw(st.sampled_from(list(Side)))
    centre = int(rules.reference_price / rules.price_tick)
    # Wide enough to reach beyond the largest guard sometimes, narrow enough for ties.
    spread_ticks = draw(st.sampled_from([PRICE_SPREAD_TICKS, int(D(12) / rules.price_tick)]))
    raw = draw(
        st.lists(
            st.tuples(
                st.sampled_from(OWNERS),
                st.integers(max(1, centre - spread_ticks), centre + spread_ticks),
                st.integers(1, 8),
            ),
            max_size=6 if market_with_house else 12,
        )
    )
    # Priority order: best price first, then oldest (lower id); a stable sort keeps age.
    makers = [
        RestingOrder(
            id=index + 1, owner_id=owner, price=ticks * rules.price_tick, remaining=steps * rules.quantity_step
        )
        for index, (owner, ticks, steps) in enumerate(raw)
    ]
    makers.sort(key=lambda order: order.price, reverse=side is Side.SELL)

    is_market = market_with_house or draw(st.booleans())
    tifs = [TimeInForce.IOC, TimeInForce.FOK] if is_market else list(TimeInForce)
    limit = None
    if not is_market:
        limit = draw(st.integers(max(1, centre - spread_ticks), centre + spread_ticks)) * rules.price_tick
    taker = TakerOrder(
        owner_id=draw(st.sampled_from(OWNERS)),
        side=side,
        quantity=draw(st.integers(1, 30)) * rules.quantity_step,
        limit_price=limit,
        time_in_force=draw(st.sampled_from(tifs)),
        stp=draw(st.sampled_from(list(SelfTradePrevention))),
    )
    return taker, makers, rules


class CountingBook:
    """Iterator over the book that records how far the engine pulled it."""

    def __init__(self, makers: Sequence[RestingOrder]) -> None:
        self._makers = list(makers)
        self.pulled = 0

    def __iter__(self) -> Iterator[RestingOrder]:
        return self

    def __next__(self) -> RestingOrder:
        if self.pulled >= len(self._makers):
            raise StopIteration
        self.pulled += 1
        return self._makers[self.pulled - 1]


# --- properties --------------------------------------------------------------------------


def assert_agrees_with_reference(taker: TakerOrder, makers: list[RestingOrder], rules: MarketRules) -> None:
    book = CountingBook(makers)
    result = match(taker=taker, makers=book, rules=rules)
    expected = reference_match(taker, makers, rules)

    assert [(f.maker_id, Fraction(f.price), Fraction(f.quantity)) for f in result.fills] == expected.fills
    assert list(result.expired_maker_ids) == expected.expired
    assert result.outcome is expected.outcome
    assert result.reason is expected.reason
    assert result.makers_examined == book.pulled == expected.examined
    filled = sum((Fraction(f.quantity) for f in result.fills), Fraction(0))
    assert Fraction(result.filled_quantity) == filled
    assert Fraction(result.remaining_quantity) == Fraction(taker.quantity) - filled


@PROPERTY_SETTINGS
@given(scenario())
def test_match_agrees_with_the_reference_model(case: tuple[TakerOrder, list[RestingOrder], MarketRules]) -> None:
    assert_agrees_with_reference(*case)


@PROPERTY_SETTINGS
@given(scenario(market_with_house=True))
def test_market_orders_with_a_house_agree_with_the_reference_model(
    case: tuple[TakerOrder, list[RestingOrder], MarketRules],
) -> None:
    assert_agrees_with_reference(*case)


@PROPERTY_SETTINGS
@given(scenario())
def test_match_invariants(case: tuple[TakerOrder, list[RestingOrder], MarketRules]) -> None:
    taker, makers, rules = case
    result = match(taker=taker, makers=makers, rules=rules)
    by_id = {order.id: order for order in makers}
    buy = taker.side is Side.BUY

    # No overfill, of the taker or of any maker.
    assert sum(f.quantity for f in result.fills) == result.filled_quantity <= taker.quantity
    filled_per_maker: dict[int, Decimal] = {}
    for fill in result.fills:
        assert fill.quantity > 0
        assert fill.quantity % rules.quantity_step == 0
        if fill.maker_id is not None:
            filled_per_maker[fill.maker_id] = filled_per_maker.get(fill.maker_id, D(0)) + fill.quantity
            assert by_id[fill.maker_id].owner_id != taker.owner_id  # never a self-trade
            assert fill.price == by_id[fill.maker_id].price  # at the maker's price
    for maker_id, quantity in filled_per_maker.items():
        assert quantity <= by_id[maker_id].remaining
    assert len([f for f in result.fills if f.maker_id is None]) <= 1

    # Never beyond the limit or the guard.
    if taker.limit_price is not None:
        bound = taker.limit_price
    else:
        offset = D(rules.max_slippage_bps) / 10_000
        bound = rules.reference_price * (1 + offset if buy else 1 - offset)
    for fill in result.fills:
        assert fill.price <= bound if buy else fill.price >= bound

    # Priority: a maker trades only once every better-priority non-self maker is used up.
    position = {order.id: index for index, order in enumerate(makers)}
    for maker_id in filled_per_maker:
        for earlier in makers[: position[maker_id]]:
            if earlier.owner_id != taker.owner_id:
                assert filled_per_maker.get(earlier.id) == earlier.remaining
    book_order = [position[f.maker_id] for f in result.fills if f.maker_id is not None]
    assert book_order == sorted(book_order)

    # Outcomes: FOK all or nothing; only GTC limits rest.
    if result.outcome is Outcome.FILLED:
        assert result.filled_quantity == taker.quantity and result.reason is None
    if taker.time_in_force is TimeInForce.FOK:
        assert result.outcome is not Outcome.REST
        if result.outcome is not Outcome.FILLED:
            assert result.fills == () and result.expired_maker_ids == ()
            assert result.reason is ExpiryReason.FOK_NOT_FILLABLE
    if result.outcome is Outcome.REST:
        assert taker.limit_price is not None and taker.time_in_force is TimeInForce.GTC
        assert result.remaining_quantity > 0
    if result.outcome is Outcome.EXPIRED:
        assert result.reason is not None and result.remaining_quantity > 0


@PROPERTY_SETTINGS
@given(scenario())
def test_fok_equals_ioc_when_complete_and_nothing_otherwise(
    case: tuple[TakerOrder, list[RestingOrder], MarketRules],
) -> None:
    taker, makers, rules = case
    fok = TakerOrder(
        owner_id=taker.owner_id,
        side=taker.side,
        quantity=taker.quantity,
        limit_price=taker.limit_price,
        time_in_force=TimeInForce.FOK,
        stp=taker.stp,
    )
    ioc = TakerOrder(
        owner_id=taker.owner_id,
        side=taker.side,
        quantity=taker.quantity,
        limit_price=taker.limit_price,
        time_in_force=TimeInForce.IOC,
        stp=taker.stp,
    )
    fok_result = match(taker=fok, makers=makers, rules=rules)
    ioc_result = match(taker=ioc, makers=makers, rules=rules)
    # The dry run (FOK) and the real walk (IOC) never disagree about feasibility.
    if ioc_result.outcome is Outcome.FILLED:
        assert fok_result == ioc_result
    else:
        assert fok_result.fills == () and fok_result.reason is ExpiryReason.FOK_NOT_FILLABLE


# --- random order streams through the engine's own market, wallets in a dictionary -------


@st.composite
def order_stream(draw: st.DrawFn, rules: MarketRules) -> list[TakerOrder]:
    centre = int(rules.reference_price / rules.price_tick)
    width = draw(st.sampled_from([PRICE_SPREAD_TICKS, int(D(6) / rules.price_tick)]))
    orders = []
    for _ in range(draw(st.integers(1, 25))):
        is_market = draw(st.integers(0, 3)) == 0
        limit = None if is_market else draw(st.integers(max(1, centre - width), centre + width)) * rules.price_tick
        tifs = (
            [TimeInForce.IOC, TimeInForce.FOK]
            if is_market
            else [TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK]
        )
        orders.append(
            TakerOrder(
                owner_id=draw(st.sampled_from(OWNERS)),
                side=draw(st.sampled_from(list(Side))),
                quantity=draw(st.integers(1, 20)) * rules.quantity_step,
                limit_price=limit,
                time_in_force=draw(st.sampled_from(tifs)),
                stp=draw(st.sampled_from(list(SelfTradePrevention))),
            )
        )
    return orders


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_streams_through_the_market_engine_conserve_and_lock_exactly(data: st.DataObject) -> None:
    """The real MarketEngine (matching, settlement postings, locks, book) over random
    orders: both assets are conserved, every lock is what the live orders hold, no wallet
    goes negative, the book holds only live GTC remainders on the step grid, each holding
    exactly the lock of its remainder."""
    rules = data.draw(market_rules(with_house=None))
    exchange = EngineExchange.create(rules=rules, owners=OWNERS, base=D(1000), quote=D(1_000_000), ttx=TTX)
    before = exchange.totals()
    for taker in data.draw(order_stream(rules)):
        order = exchange.place_taker(taker)
        if order is not None and (taker.limit_price is None or taker.time_in_force is not TimeInForce.GTC):
            assert not order.is_live, order
        assert exchange.totals() == before
        exchange.assert_locks_match()
        assert all(o.remaining > 0 and o.remaining % rules.quantity_step == 0 for o in exchange.resting())
        # A resting order holds what its remainder needs, no more (a buy that filled some at
        # better prices, or as a maker at the maker fee, released the rest at once).
        assert all(o.locked_amount == exchange.engine.required_lock(o) for o in exchange.resting())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fee_rates_changed_while_buys_rest_never_fail_a_taker(data: st.DataObject) -> None:
    """Random streams with the fee settings changed between orders (the operator, between
    two runs of the engine: resting orders keep the locks of their placing, which may be
    short of the maker fee at the new rates) and traders with little quote beyond their
    locks. An order is refused only for its own lock; no wallet goes negative (DictWallets);
    both assets are conserved; the fee account receives exactly the fees of the trades; a
    maker pays at most its fee at the rates of the moment; the wallets' locks are what the
    live orders hold, a resting buy at least its remainder's notional."""
    rules = data.draw(market_rules(with_house=None))
    quote = data.draw(st.sampled_from([D(300), D(3000), D(1_000_000)]))
    exchange = EngineExchange.create(rules=rules, owners=OWNERS, base=D(1000), quote=quote, ttx=TTX)
    engine = exchange.engine
    before = exchange.totals()
    for taker in data.draw(order_stream(rules)):
        if data.draw(st.booleans()):
            taker_bps = data.draw(st.integers(0, 60))
            rates = FeeRates(taker_bps=taker_bps, maker_bps=data.draw(st.integers(0, taker_bps)))
            engine.rules = replace(engine.rules, rates=rates)
        trades = len(exchange.journal.trades)
        exchange.place_taker(taker)  # refused (None) only by InsufficientFunds of its own lock
        for trade in exchange.journal.trades[trades:]:
            settled = trade.settled
            assert settled.taker_fee == calculate_fee(
                notional=settled.notional,
                fee_bps=engine.rules.rates.taker_bps,
                discount=exchange.discounts(trade.taker.user_id),
            )
            due = calculate_fee(
                notional=settled.notional,
                fee_bps=engine.rules.rates.maker_bps,
                discount=exchange.discounts(trade.maker_user_id),
            )
            assert D(0) <= settled.maker_fee <= (due if trade.maker is not None else D(0))
        assert exchange.totals() == before
        fees = sum((t.settled.taker_fee + t.settled.maker_fee for t in exchange.journal.trades), D(0))
        assert exchange.wallets.balances[engine.accounts.fee_wallet][0] == fees
        exchange.assert_locks_match()
        for order in exchange.resting():
            if order.side is Side.BUY:
                assert order.price is not None
                assert order.locked_amount >= quantize_up(order.remaining * order.price), order
            else:
                assert order.locked_amount == order.remaining, order
