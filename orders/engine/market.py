"""One market as the sequencer runs it: its book, its pending stops and the rules of
placing, matching, settling and cancelling, applied to in-memory orders. Pure: wallets,
fee discounts and the clock are the caller's (the sequencer's batch), passed in.

A command either happens whole or not at all: everything that can refuse it (validation,
funds) is decided before the first change, so a refusal leaves the market untouched."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from orders.engine.book import LiveOrder, OrderBook, StopBook
from orders.engine.fees import buy_lock_amount, market_buy_lock_amount
from orders.engine.matching import match
from orders.engine.money import ONE, ZERO
from orders.engine.pricing import house_max_notional
from orders.engine.rates import usd_rate_market
from orders.engine.settlement import Accounts, FeeRates, Posting, SettledFill, WalletKey, release, settle_fill
from orders.engine.stops import stop_triggered
from orders.engine.types import (
    TERMINAL_STATUSES,
    ExpiryReason,
    Fill,
    HouseInventory,
    MarketRules,
    OrderStatus,
    OrderType,
    Outcome,
    RestingOrder,
    Side,
    TakerOrder,
)
from orders.engine.undo import Undo
from orders.errors import InsufficientFunds


class Discounts(Protocol):
    """Each user's fee discount (from TTX holdings), as the caller knows them."""

    def load(self, user_ids: set[int]) -> None:
        """Make the discounts of these users known at once (one read for a whole fill list)."""

    def __call__(self, user_id: int) -> Decimal: ...


class Wallets(Protocol):
    """The batch's view of the wallets (rows locked for the batch, changed in memory)."""

    def available(self, key: WalletKey) -> Decimal: ...

    def lock(self, key: WalletKey, amount: Decimal) -> None:
        """Raise InsufficientFunds when `amount` exceeds what is available."""

    def post(self, postings: tuple[Posting, ...] | list[Posting]) -> None: ...


@dataclass(slots=True)
class MarketSpec:
    """The market's row as the engine uses it (refreshed from the database every batch)."""

    id: int
    symbol: str
    base_id: int
    quote_id: int
    quote_symbol: str  # the quote asset's (its dollar rate: orders.engine.rates)
    price_tick: Decimal
    quantity_step: Decimal
    min_quantity: Decimal
    reference_price: Decimal
    last_price: Decimal | None
    is_active: bool


@dataclass(frozen=True, slots=True)
class HouseSettings:
    enabled: bool
    max_notional_usd: Decimal  # in US dollars on every market (pricing.house_max_notional)
    slippage_percent: Decimal


@dataclass(frozen=True, slots=True)
class TradingRules:
    """The platform's settings, passed in rather than read."""

    rates: FeeRates
    max_slippage_bps: int
    house: HouseSettings
    house_user_id: int
    fee_user_id: int


@dataclass(slots=True, eq=False)
class TradeRecord:
    """A trade made in this batch, its orders by reference (ids come with the write)."""

    taker: LiveOrder
    maker: LiveOrder | None
    maker_user_id: int  # the maker order's owner, or the house
    settled: SettledFill
    reference_price: Decimal
    executed_at: datetime
    id: int | None = None

    @property
    def price(self) -> Decimal:
        return self.settled.fill.price

    @property
    def quantity(self) -> Decimal:
        return self.settled.fill.quantity


@dataclass(slots=True)
class Journal:
    """Everything a batch changed, in order, for the batch writer."""

    new_orders: list[LiveOrder] = field(default_factory=list)
    touched: dict[int, LiveOrder] = field(default_factory=dict)  # by id(order)
    trades: list[TradeRecord] = field(default_factory=list)
    markets: dict[int, MarketSpec] = field(default_factory=dict)  # whose last or reference price changed

    def touch(self, order: LiveOrder) -> None:
        self.touched[id(order)] = order


class MarketEngine:
    def __init__(self, *, spec: MarketSpec, rules: TradingRules) -> None:
        self.spec = spec
        self.rules = rules
        self._limit_rules: tuple[tuple[object, ...], MarketRules] | None = None  # _Run._market_rules
        self.book = OrderBook()
        self.stops = StopBook()
        self.live: dict[int, LiveOrder] = {}  # persisted live orders by id (cancels find them here)
        self.undo: Undo | None = None  # orders.engine.undo: set by a sequencer (engine.attach)
        # What the announcer of this engine's batches keeps with it (orders.streams: the
        # candles and ticker), living and dying with the engine. An attribute, not a weak
        # reference to the engine: a compiled class (core/compiled.py) has none.
        self.announced: object = None
        # The market whose reference price is the quote asset's dollar rate (None: the quote
        # is USD-pegged, rate 1), and that rate as the sequencer last read it (None: none
        # known, and then the house does not fill here). Read by every batch that places
        # orders in this market, before they are applied (orders.sequencer.loop).
        self.quote_rate_market: str | None = usd_rate_market(spec.quote_symbol)
        self.quote_usd_rate: Decimal | None = ONE if self.quote_rate_market is None else None
        self.accounts = Accounts(
            market_id=spec.id,
            base_id=spec.base_id,
            quote_id=spec.quote_id,
            house_user_id=rules.house_user_id,
            fee_user_id=rules.fee_user_id,
        )

    def attach(self, undo: Undo) -> None:
        """From now on every change is recorded in `undo` before it is made."""
        self.undo = self.book.undo = self.stops.undo = undo

    def _forget(self, order: LiveOrder) -> None:
        """No longer live: out of the orders cancels can find."""
        if order.id is not None and self.live.pop(order.id, None) is not None and self.undo is not None:
            self.undo.record(self.live.__setitem__, order.id, order)

    def _spec_change(self, name: str, value: Decimal | None) -> None:
        if self.undo is not None:
            self.undo.record(setattr, self.spec, name, getattr(self.spec, name))
        setattr(self.spec, name, value)

    # --- loading -----------------------------------------------------------------------

    def restore(self, order: LiveOrder) -> None:
        """A live order read from the database at start (in id order)."""
        if order.id is None:
            raise ValueError("a restored order has its id")
        self.live[order.id] = order
        if order.status is OrderStatus.PENDING_TRIGGER:
            self.stops.add(order)
        else:
            self.book.add(order)

    def registered(self, order: LiveOrder) -> None:
        """After the batch that created `order` was written: cancels can now name it."""
        if order.id is not None and order.is_live:
            if self.undo is not None:
                self.undo.record(self.live.pop, order.id, None)
            self.live[order.id] = order

    # --- commands ----------------------------------------------------------------------

    def place(
        self, order: LiveOrder, *, journal: Journal, wallets: Wallets, discount: Discounts, now: datetime
    ) -> None:
        """Place a new, validated order; raises InsufficientFunds (nothing changed) when
        its lock cannot be taken. Stops its trades fire run right after it."""
        run = _Run(engine=self, journal=journal, wallets=wallets, discount=discount, now=now)
        if order.type.is_stop and not self._stop_fires_now(order):
            reference = max(self.spec.reference_price, _present(order.stop_price))
            required = self.required_lock(order, reference_price=reference)
            self.lock(wallets, order, required)
            order.locked_amount = required
            run.transition(order, OrderStatus.PENDING_TRIGGER)
            self.stops.add(order)
            journal.new_orders.append(order)
            return
        run.execute(order, placing=True)  # raises InsufficientFunds before changing anything
        journal.new_orders.append(order)
        run.fire_triggered_stops()

    def cancel(self, order: LiveOrder, *, journal: Journal, wallets: Wallets, now: datetime) -> None:
        if not order.is_live:
            raise ValueError(f"order {order.id} is not live")
        if self.undo is not None:
            self.undo.keep(order)
        run = _Run(engine=self, journal=journal, wallets=wallets, discount=_NO_DISCOUNTS, now=now)
        if order.status is OrderStatus.PENDING_TRIGGER:
            self.stops.remove(order)
        else:
            self.book.remove(order)
        run.close(order, OrderStatus.CANCELLED, "user_cancelled")
        order.cancelled_at = now

    def set_reference_price(self, price: Decimal, *, journal: Journal) -> None:
        self._spec_change("reference_price", price)
        journal.markets[self.spec.id] = self.spec

    # --- rules -------------------------------------------------------------------------

    def lock(self, wallets: Wallets, order: LiveOrder, amount: Decimal) -> None:
        """Lock `amount` more of what `order` spends (quote for a buy, base for a sell).
        Refused (InsufficientFunds, nothing changed) with a message that names the asset,
        the lock and what is available: a bot told only "not enough funds" could not tell
        how much a market buy locks (quantity at the slippage guard, plus the taker fee)."""
        funding = self.accounts.funding(owner_id=order.user_id, side=order.side)
        try:
            wallets.lock(funding, amount)
        except InsufficientFunds:  # the message built on refusal only: the hot path pays nothing
            quote = self.spec.quote_symbol
            asset = quote if order.side is Side.BUY else self.spec.symbol.removesuffix("-" + quote)
            raise InsufficientFunds(
                f"Not enough available {asset}: this order locks {amount:.8f} {asset}"
                f" and {wallets.available(funding):.8f} {asset} is available."
            ) from None

    def required_lock(self, order: LiveOrder, *, reference_price: Decimal | None = None) -> Decimal:
        """What `order` must hold for its remainder: base for a sell; for a buy, the
        notional at its limit (or at the slippage guard of the reference) plus the full
        taker fee, which covers any fill (docs/matching.md, Funds locking)."""
        remaining = order.remaining
        if order.side is Side.SELL:
            return remaining
        if not order.type.executes_as_market:
            return buy_lock_amount(
                quantity=remaining, price=_present(order.price), taker_fee_bps=self.rules.rates.taker_bps
            )
        return market_buy_lock_amount(
            quantity=remaining,
            reference_price=reference_price or self.spec.reference_price,
            max_slippage_bps=self.rules.max_slippage_bps,
            taker_fee_bps=self.rules.rates.taker_bps,
        )

    def _stop_fires_now(self, order: LiveOrder) -> bool:
        last = self.spec.last_price
        return last is not None and stop_triggered(
            order_type=order.type, side=order.side, stop_price=_present(order.stop_price), last_price=last
        )


@dataclass(slots=True)
class _Run:
    """One command's work on a market: executions, settlements and the stops they fire."""

    engine: MarketEngine
    journal: Journal
    wallets: Wallets
    discount: Discounts
    now: datetime
    fired: deque[LiveOrder] = field(default_factory=deque)

    def transition(self, order: LiveOrder, status: OrderStatus, reason: str | None = None) -> None:
        if self.engine.undo is not None:
            self.engine.undo.keep(order)
        order.status = status
        order.status_reason = reason
        order.updated_at = self.now
        if status in TERMINAL_STATUSES:
            order.closed_at = self.now
        if status is OrderStatus.FILLED:
            order.filled_at = self.now
        order.pending_events.append((status, reason))
        self.journal.touch(order)

    def close(self, order: LiveOrder, status: OrderStatus, reason: str | None) -> None:
        """A terminal status; whatever the order still holds is released."""
        if self.engine.undo is not None:
            self.engine.undo.keep(order)
        if order.locked_amount:
            funding = self.engine.accounts.funding(owner_id=order.user_id, side=order.side)
            self.wallets.post([release(funding, order.locked_amount)])
            order.locked_amount = ZERO
        self.transition(order, status, reason)
        self.engine._forget(order)

    def execute(self, order: LiveOrder, *, placing: bool) -> None:
        """Match `order` as the taker and settle the result. `order.locked_amount` is what
        it holds already (a triggered stop); the rest of its lock is taken first, and
        InsufficientFunds leaves everything as it was."""
        engine = self.engine
        if engine.undo is not None:
            engine.undo.keep(order)
        as_market = order.type.executes_as_market
        seen: list[LiveOrder] = []

        def book() -> Iterator[RestingOrder]:
            for maker in engine.book.makers(taker_side=order.side):
                seen.append(maker)
                yield RestingOrder(
                    id=len(seen) - 1, owner_id=maker.user_id, price=_present(maker.price), remaining=maker.remaining
                )

        result = match(
            taker=TakerOrder(
                owner_id=order.user_id,
                side=order.side,
                quantity=order.remaining,
                limit_price=None if as_market else order.price,
                time_in_force=order.time_in_force,
                stp=order.stp,
            ),
            makers=book(),
            rules=self._market_rules(house=self._house_inventory(taker_side=order.side) if as_market else None),
        )
        funding = engine.accounts.funding(owner_id=order.user_id, side=order.side)
        required = engine.required_lock(order)
        if required > order.locked_amount:
            engine.lock(self.wallets, order, required - order.locked_amount)  # may refuse: nothing changed yet
        elif required < order.locked_amount:
            self.wallets.post([release(funding, order.locked_amount - required)])
        order.locked_amount = required

        if placing and order.type.is_stop:  # placed with its condition already met
            self.transition(order, OrderStatus.PENDING_TRIGGER)
        if order.type.is_stop:
            order.triggered_at = self.now
            self.transition(order, OrderStatus.OPEN, "triggered")
        else:
            self.transition(order, OrderStatus.OPEN)

        if result.fills:
            self.discount.load({order.user_id} | {f.maker_owner_id for f in result.fills if f.maker_owner_id})
        for fill in result.fills:
            maker = seen[fill.maker_id] if fill.maker_id is not None else None
            self._settle(order=order, maker=maker, settled=self._settled(order, maker, fill))
        for index in result.expired_maker_ids:
            maker = seen[index]
            engine.book.remove(maker)
            self.close(maker, OrderStatus.EXPIRED, ExpiryReason.SELF_TRADE_PREVENTION.value)

        if result.outcome is Outcome.FILLED:
            self.transition(order, OrderStatus.FILLED)
        elif result.outcome is Outcome.REST:
            if order.filled_quantity > 0:
                self.transition(order, OrderStatus.PARTIALLY_FILLED)
                self._surplus_release(order)
            engine.book.add(order)
        else:
            self.transition(order, OrderStatus.EXPIRED, result.reason.value if result.reason else None)
        if not order.is_live:
            if order.locked_amount:
                self.wallets.post([release(funding, order.locked_amount)])
                order.locked_amount = ZERO
            engine._forget(order)

    def _market_rules(self, *, house: HouseInventory | None) -> MarketRules:
        """The rules a match runs under; without the house (a limit order) the same object
        while the market's grid and reference stay (match validates an object once)."""
        engine, spec = self.engine, self.engine.spec
        key = (spec.reference_price, engine.rules.max_slippage_bps, spec.price_tick, spec.quantity_step)
        if house is None and engine._limit_rules is not None and engine._limit_rules[0] == key:
            return engine._limit_rules[1]
        rules = MarketRules(
            reference_price=key[0], max_slippage_bps=key[1], price_tick=key[2], quantity_step=key[3], house=house
        )
        if house is None:
            engine._limit_rules = (key, rules)
        return rules

    def _settled(self, taker: LiveOrder, maker: LiveOrder | None, fill: Fill) -> SettledFill:
        return settle_fill(
            fill=fill,
            taker_side=taker.side,
            taker_owner_id=taker.user_id,
            accounts=self.engine.accounts,
            rates=self.engine.rules.rates,
            taker_discount=self.discount(taker.user_id),
            maker_discount=ZERO if maker is None else self.discount(maker.user_id),
            maker_locked=ZERO if maker is None else maker.locked_amount,
            maker_remaining=ZERO if maker is None else maker.remaining,
            available=self.wallets.available,
        )

    def _settle(self, *, order: LiveOrder, maker: LiveOrder | None, settled: SettledFill) -> None:
        engine = self.engine
        self.wallets.post(settled.postings)
        fill = settled.fill
        _fill(order, quantity=fill.quantity, notional=settled.notional, fee=settled.taker_fee)
        order.locked_amount -= settled.taker_spent
        if maker is not None:
            if engine.undo is not None:
                engine.undo.keep(maker)
            _fill(maker, quantity=fill.quantity, notional=settled.notional, fee=settled.maker_fee)
            maker.locked_amount -= settled.maker_spent
            maker.updated_at = self.now
            self.journal.touch(maker)
            if maker.filled_quantity == maker.quantity:
                engine.book.remove(maker)
                self.close(maker, OrderStatus.FILLED, None)
            else:
                if maker.status is not OrderStatus.PARTIALLY_FILLED:
                    self.transition(maker, OrderStatus.PARTIALLY_FILLED)
                self._surplus_release(maker)
        self.journal.trades.append(
            TradeRecord(
                taker=order,
                maker=maker,
                maker_user_id=engine.accounts.house_user_id if maker is None else maker.user_id,
                settled=settled,
                reference_price=engine.spec.reference_price,
                executed_at=self.now,
            )
        )
        engine._spec_change("last_price", fill.price)
        self.journal.markets[engine.spec.id] = engine.spec
        # Every trade is checked against the pending stops, in order: what it reaches fires.
        self.fired.extend(engine.stops.take_reached(fill.price))

    def _surplus_release(self, order: LiveOrder) -> None:
        """A resting buy that filled some (at better prices than its limit, or as a maker
        at the maker fee) holds more than its remainder can spend: what is beyond the
        remainder's own lock is released at once, not when the order ends."""
        if order.side is not Side.BUY:
            return  # a sell holds its remaining base, exactly
        surplus = order.locked_amount - self.engine.required_lock(order)
        if surplus > 0:
            self.wallets.post([release(self.engine.accounts.funding(owner_id=order.user_id, side=order.side), surplus)])
            order.locked_amount -= surplus

    def fire_triggered_stops(self) -> None:
        """Execute the stops the trades fired, oldest first per trade, each right after the
        trades before it; their own trades fire more (no cap: each stop fires once)."""
        while self.fired:
            stop = self.fired.popleft()
            try:
                self.execute(stop, placing=False)
            except InsufficientFunds:
                # A stop buy's lock recomputed at the reference of this moment cannot be
                # covered: it was triggered (its trail and triggered_at say so, as for any
                # stop), then ends in error, its lock released.
                stop.triggered_at = self.now
                self.transition(stop, OrderStatus.OPEN, "triggered")
                self.close(stop, OrderStatus.ERROR, "insufficient_funds")

    def _house_inventory(self, *, taker_side: Side) -> HouseInventory | None:
        house = self.engine.rules.house
        if not house.enabled:
            return None
        max_notional = house_max_notional(max_usd=house.max_notional_usd, quote_usd_rate=self.engine.quote_usd_rate)
        if max_notional is None:
            return None  # the quote asset has no dollar rate: no house liquidity here
        return HouseInventory(
            base_available=self.wallets.available(self.engine.accounts.house_base),
            quote_available=self.wallets.available(self.engine.accounts.house_quote),
            max_notional=max_notional,
            slippage_percent=house.slippage_percent,
            taker_side_best=self.engine.book.best(taker_side),
        )


class _NoDiscounts:
    """For commands that trade nothing (a cancel)."""

    def load(self, user_ids: set[int]) -> None:
        return None

    def __call__(self, user_id: int) -> Decimal:
        return ZERO


_NO_DISCOUNTS = _NoDiscounts()


def _fill(order: LiveOrder, *, quantity: Decimal, notional: Decimal, fee: Decimal) -> None:
    order.filled_quantity += quantity
    order.quote_filled += notional
    order.fee_paid += fee


def _present(value: Decimal | None) -> Decimal:
    if value is None:
        raise ValueError("a price the order's type requires is missing")
    return value


__all__ = [
    "HouseSettings",
    "Journal",
    "LiveOrder",
    "MarketEngine",
    "MarketSpec",
    "OrderType",
    "TradeRecord",
    "TradingRules",
    "Wallets",
]
