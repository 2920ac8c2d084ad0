"""Who pays and receives what: a fill of the engine turned into postings per wallet.

Pure: the accounts, the fee rates, the maker order's lock and (read only when that lock
falls short of its fee) its owner's available quote come in as arguments. A posting changes a wallet's
balance and its locked part; the caller applies them (the sequencer's batch wallets, or
a test's dictionary). Every fill's postings conserve each asset: what one wallet gives,
others receive, fees included (they go to the fee account's sub-wallet of the market)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from orders.engine.fees import calculate_fee
from orders.engine.money import ZERO, exact_arithmetic, quantize_up
from orders.engine.types import Fill, Side

WalletKey = tuple[int, int, int]  # user id, asset id, bucket (0 for traders, the market id for system accounts)
TRADER_BUCKET = 0


@dataclass(frozen=True, slots=True)
class Accounts:
    """The wallets a market settles with: its assets and the platform's sub-wallets of it."""

    market_id: int
    base_id: int
    quote_id: int
    house_user_id: int
    fee_user_id: int

    def funding(self, *, owner_id: int, side: Side) -> WalletKey:
        """What an order of `side` locks and spends: quote for a buy, base for a sell."""
        return (owner_id, self.quote_id if side is Side.BUY else self.base_id, TRADER_BUCKET)

    def trader(self, owner_id: int, asset_id: int) -> WalletKey:
        return (owner_id, asset_id, TRADER_BUCKET)

    @property
    def fee_wallet(self) -> WalletKey:
        return (self.fee_user_id, self.quote_id, self.market_id)

    @property
    def house_base(self) -> WalletKey:
        return (self.house_user_id, self.base_id, self.market_id)

    @property
    def house_quote(self) -> WalletKey:
        return (self.house_user_id, self.quote_id, self.market_id)


@dataclass(frozen=True, slots=True)
class Posting:
    wallet: WalletKey
    balance: Decimal = ZERO  # change of the balance
    locked: Decimal = ZERO  # change of the locked part


def lock(wallet: WalletKey, amount: Decimal) -> Posting:
    return Posting(wallet, locked=amount)


def release(wallet: WalletKey, amount: Decimal) -> Posting:
    return Posting(wallet, locked=-amount)


@dataclass(frozen=True, slots=True)
class FeeRates:
    taker_bps: int
    maker_bps: int


@dataclass(frozen=True, slots=True)
class SettledFill:
    """One fill settled: the trade's amounts and the postings that move them."""

    fill: Fill
    notional: Decimal
    taker_fee: Decimal
    maker_fee: Decimal
    taker_spent: Decimal  # what leaves the taker's lock
    maker_spent: Decimal  # what leaves the maker order's lock (0 for the house)
    postings: tuple[Posting, ...]


def _maker_buy_payment(
    *, notional: Decimal, fee: Decimal, locked: Decimal, remaining_after: Decimal, price: Decimal, available: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """How a buying maker pays `notional + fee`: (from its order's lock, from its available
    quote, the fee charged). Its lock was taken at the taker fee of its placing; when the
    fees rose since (the operator's settings between two runs), the lock can fall short of
    the maker fee at the new rate. The lock pays as far as it stays enough for the notional
    of the order's remainder (all its later fills are at this price); what is beyond comes
    from the owner's available quote; what even that cannot cover is not charged (the fee
    is capped at what the maker has). A taker is never refused for a maker's lock."""
    spendable = locked - quantize_up(remaining_after * price)
    if spendable < notional:
        raise ValueError("a maker buy's lock does not cover its notional")
    need = notional + fee
    from_lock = min(need, spendable)
    from_available = min(need - from_lock, max(available, ZERO))
    return from_lock, from_available, from_lock + from_available - notional


def settle_fill(
    *,
    fill: Fill,
    taker_side: Side,
    taker_owner_id: int,
    accounts: Accounts,
    rates: FeeRates,
    taker_discount: Decimal,
    maker_discount: Decimal,
    maker_locked: Decimal,
    maker_remaining: Decimal,
    available: Callable[[WalletKey], Decimal],
) -> SettledFill:
    """Postings of one fill. Fees are paid in quote: a buyer pays notional + fee out of its
    lock, a seller receives notional - fee. The house is the platform: it pays no fee and
    trades from its sub-wallets of the market, which hold no locks.

    `maker_locked`, `maker_remaining`: what the maker order holds and has left to fill
    before this fill (ignored for the house); `available(wallet)`: a wallet's balance less
    its locks, read only when a buying maker's lock falls short of its fee
    (`_maker_buy_payment`)."""
    with exact_arithmetic():
        notional = fill.notional
        taker_fee = calculate_fee(notional=notional, fee_bps=rates.taker_bps, discount=taker_discount)
        maker_fee = (
            ZERO
            if fill.is_house
            else calculate_fee(notional=notional, fee_bps=rates.maker_bps, discount=maker_discount)
        )
        base, quote = accounts.base_id, accounts.quote_id
        taker_buys = (taker_side if type(taker_side) is Side else Side(taker_side)) is Side.BUY
        postings: list[Posting] = []
        # The taker spends from its lock and receives the other asset.
        if taker_buys:
            taker_spent = notional + taker_fee
            postings += [
                Posting(accounts.trader(taker_owner_id, quote), balance=-taker_spent, locked=-taker_spent),
                Posting(accounts.trader(taker_owner_id, base), balance=fill.quantity),
            ]
        else:
            taker_spent = fill.quantity
            postings += [
                Posting(accounts.trader(taker_owner_id, base), balance=-taker_spent, locked=-taker_spent),
                Posting(accounts.trader(taker_owner_id, quote), balance=notional - taker_fee),
            ]
        maker_spent = ZERO
        if fill.maker_owner_id is not None:
            maker = fill.maker_owner_id
            if taker_buys:  # the maker sold
                maker_spent = fill.quantity
                postings += [
                    Posting(accounts.trader(maker, base), balance=-maker_spent, locked=-maker_spent),
                    Posting(accounts.trader(maker, quote), balance=notional - maker_fee),
                ]
            else:  # the maker bought
                maker_quote = accounts.trader(maker, quote)
                maker_spent = notional + maker_fee
                from_available = ZERO
                if maker_spent > maker_locked - quantize_up((maker_remaining - fill.quantity) * fill.price):
                    maker_spent, from_available, maker_fee = _maker_buy_payment(
                        notional=notional,
                        fee=maker_fee,
                        locked=maker_locked,
                        remaining_after=maker_remaining - fill.quantity,
                        price=fill.price,
                        available=available(maker_quote),
                    )
                postings += [
                    Posting(maker_quote, balance=-(maker_spent + from_available), locked=-maker_spent),
                    Posting(accounts.trader(maker, base), balance=fill.quantity),
                ]
        elif taker_buys:
            postings += [
                Posting(accounts.house_base, balance=-fill.quantity),
                Posting(accounts.house_quote, balance=notional),
            ]
        else:
            postings += [
                Posting(accounts.house_quote, balance=-notional),
                Posting(accounts.house_base, balance=fill.quantity),
            ]
        postings.append(Posting(accounts.fee_wallet, balance=taker_fee + maker_fee))
    return SettledFill(
        fill=fill,
        notional=notional,
        taker_fee=taker_fee,
        maker_fee=maker_fee,
        taker_spent=taker_spent,
        maker_spent=maker_spent,
        postings=tuple(postings),
    )
