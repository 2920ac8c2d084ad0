"""Who pays and receives what: a fill of the engine turned into postings per wallet.

Pure: the accounts and fee rates come in as arguments. A posting changes a wallet's
balance and its locked part; the caller applies them (the sequencer's batch wallets, or
a test's dictionary). Every fill's postings conserve each asset: what one wallet gives,
others receive, fees included (they go to the fee account's sub-wallet of the market)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orders.engine.fees import calculate_fee
from orders.engine.money import ZERO, exact_arithmetic
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


def settle_fill(
    *,
    fill: Fill,
    taker_side: Side,
    taker_owner_id: int,
    accounts: Accounts,
    rates: FeeRates,
    taker_discount: Decimal,
    maker_discount: Decimal,
) -> SettledFill:
    """Postings of one fill. Fees are paid in quote: a buyer pays notional + fee out of its
    lock, a seller receives notional - fee. The house is the platform: it pays no fee and
    trades from its sub-wallets of the market, which hold no locks."""
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
                maker_spent = notional + maker_fee
                postings += [
                    Posting(accounts.trader(maker, quote), balance=-maker_spent, locked=-maker_spent),
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
