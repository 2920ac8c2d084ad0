"""The engine's own MarketEngine with wallets kept in a dictionary: pure, no database.
What the sequencer does around it (validation, persistence) is left out; what happens to
money is exactly the engine's (orders.engine.settlement)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from orders.engine import MarketRules, OrderType, TakerOrder, fee_discount_for
from orders.engine.book import LiveOrder
from orders.engine.market import HouseSettings, Journal, MarketEngine, MarketSpec, TradingRules
from orders.engine.settlement import FeeRates, Posting, WalletKey
from orders.engine.types import OrderStatus, SelfTradePrevention, Side, TimeInForce
from orders.errors import InsufficientFunds

D = Decimal
HOUSE_USER, FEE_USER = 900, 901
BASE, QUOTE, MARKET = 1, 2, 7
TTX: dict[int, Decimal] = {1: D(0), 2: D(150), 3: D(20_000)}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class DictWallets:
    balances: dict[WalletKey, list[Decimal]] = field(default_factory=lambda: defaultdict(lambda: [D(0), D(0)]))

    def available(self, key: WalletKey) -> Decimal:
        balance, locked = self.balances[key]
        return balance - locked

    def lock(self, key: WalletKey, amount: Decimal) -> None:
        if amount > self.available(key):
            raise InsufficientFunds()
        self.balances[key][1] += amount

    def post(self, postings: tuple[Posting, ...] | list[Posting]) -> None:
        for posting in postings:
            row = self.balances[posting.wallet]
            row[0] += posting.balance
            row[1] += posting.locked
            assert row[0] >= 0 and 0 <= row[1] <= row[0], (posting, row)


@dataclass
class FixedDiscounts:
    holdings: dict[int, Decimal]

    def load(self, user_ids: set[int]) -> None:
        return None

    def __call__(self, user_id: int) -> Decimal:
        return fee_discount_for(self.holdings.get(user_id, D(0)))


@dataclass
class EngineExchange:
    engine: MarketEngine
    wallets: DictWallets
    discounts: FixedDiscounts
    journal: Journal = field(default_factory=Journal)
    orders: list[LiveOrder] = field(default_factory=list)
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def create(
        cls,
        *,
        rules: MarketRules,
        owners: list[int],
        base: Decimal,
        quote: Decimal,
        ttx: dict[int, Decimal],
        quote_symbol: str = "USDT",
    ) -> EngineExchange:
        """`rules.house.max_notional` is the house's cap in US dollars (MAX_AUTO_FILL_USD); a
        quote asset that is not USD-pegged has no dollar rate until one is set on the engine
        (`engine.quote_usd_rate`, the sequencer's job)."""
        house = rules.house
        engine = MarketEngine(
            spec=MarketSpec(
                id=MARKET,
                symbol=f"B-{quote_symbol}",
                base_id=BASE,
                quote_id=QUOTE,
                quote_symbol=quote_symbol,
                price_tick=rules.price_tick,
                quantity_step=rules.quantity_step,
                min_quantity=rules.quantity_step,
                reference_price=rules.reference_price,
                last_price=None,
                is_active=True,
            ),
            rules=TradingRules(
                rates=FeeRates(taker_bps=12, maker_bps=8),
                max_slippage_bps=rules.max_slippage_bps,
                house=HouseSettings(
                    enabled=house is not None,
                    max_notional_usd=house.max_notional if house else D(0),
                    slippage_percent=house.slippage_percent if house else D(0),
                ),
                house_user_id=HOUSE_USER,
                fee_user_id=FEE_USER,
            ),
        )
        wallets = DictWallets()
        for owner in owners:
            wallets.balances[(owner, BASE, 0)] = [base, D(0)]
            wallets.balances[(owner, QUOTE, 0)] = [quote, D(0)]
        if house is not None:
            wallets.balances[(HOUSE_USER, BASE, MARKET)] = [house.base_available, D(0)]
            wallets.balances[(HOUSE_USER, QUOTE, MARKET)] = [house.quote_available, D(0)]
        return cls(engine=engine, wallets=wallets, discounts=FixedDiscounts(dict(ttx)))

    def new_order(
        self,
        *,
        owner: int,
        side: Side,
        kind: OrderType,
        quantity: Decimal,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        stp: SelfTradePrevention = SelfTradePrevention.SKIP,
    ) -> LiveOrder:
        seq = next(self.seq)
        return LiveOrder(
            seq=seq,
            id=seq,  # as if written at once
            user_id=owner,
            market_id=MARKET,
            side=side,
            type=kind,
            time_in_force=tif,
            stp=stp,
            price=price,
            stop_price=stop_price,
            quantity=quantity,
            status=OrderStatus.OPEN,
            created_at=NOW,
            updated_at=NOW,
        )

    def place(self, order: LiveOrder) -> LiveOrder | None:
        """Place; None when refused for funds (then nothing changed)."""
        try:
            self.engine.place(order, journal=self.journal, wallets=self.wallets, discount=self.discounts, now=NOW)
        except InsufficientFunds:
            return None
        self.engine.registered(order)
        self.orders.append(order)
        return order

    def place_taker(self, taker: TakerOrder) -> LiveOrder | None:
        kind = OrderType.MARKET if taker.limit_price is None else OrderType.LIMIT
        return self.place(
            self.new_order(
                owner=taker.owner_id,
                side=taker.side,
                kind=kind,
                quantity=taker.quantity,
                price=taker.limit_price,
                tif=taker.time_in_force,
                stp=taker.stp,
            )
        )

    def cancel(self, order: LiveOrder) -> None:
        self.engine.cancel(order, journal=self.journal, wallets=self.wallets, now=NOW)

    def resting(self) -> list[LiveOrder]:
        return list(self.engine.book.makers(taker_side=Side.BUY)) + list(self.engine.book.makers(taker_side=Side.SELL))

    def totals(self) -> tuple[Decimal, Decimal]:
        base = sum((row[0] for key, row in self.wallets.balances.items() if key[1] == BASE), D(0))
        quote = sum((row[0] for key, row in self.wallets.balances.items() if key[1] == QUOTE), D(0))
        return base, quote

    def assert_locks_match(self) -> None:
        held: dict[WalletKey, Decimal] = defaultdict(Decimal)
        for order in self.orders:
            if order.is_live:
                held[self.engine.accounts.funding(owner_id=order.user_id, side=order.side)] += order.locked_amount
            else:
                assert order.locked_amount == 0, order
        locks = {key: row[1] for key, row in self.wallets.balances.items() if row[1]}
        assert locks == {key: amount for key, amount in held.items() if amount}, (locks, dict(held))
