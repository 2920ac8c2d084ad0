"""The pure settlement module: a fill -> postings per wallet, property-tested directly."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from orders.engine import Fill, Side, buy_lock_amount, calculate_fee, notional_of
from orders.engine.money import quantize_up
from orders.engine.settlement import Accounts, FeeRates, WalletKey, settle_fill

D = Decimal
ACCOUNTS = Accounts(market_id=7, base_id=1, quote_id=2, house_user_id=900, fee_user_id=901)
RATES = FeeRates(taker_bps=12, maker_bps=8)
prices = st.integers(1, 10**12).map(lambda n: D(n).scaleb(-2))
quantities = st.integers(1, 10**12).map(lambda n: D(n).scaleb(-8))
discounts = st.sampled_from([D(0), D("0.1"), D("0.35"), D("0.7")])


def _unread(wallet: WalletKey) -> D:
    raise AssertionError(f"the available balance of {wallet} was read")


def _maker_lock(*, side: Side, quantity: D, price: D, taker_bps: int) -> D:
    """What a resting maker holds for `quantity` at `price` (the taker sells to a buying maker)."""
    return buy_lock_amount(quantity=quantity, price=price, taker_fee_bps=taker_bps) if side is Side.SELL else quantity


@settings(max_examples=300, deadline=None)
@given(
    price=prices,
    quantity=quantities,
    side=st.sampled_from(list(Side)),
    house=st.booleans(),
    taker_discount=discounts,
    maker_discount=discounts,
)
def test_a_fill_conserves_each_asset_and_moves_exactly_what_the_trade_says(
    price, quantity, side, house, taker_discount, maker_discount
):
    taker, maker = 11, 12
    fill = Fill(maker_id=None if house else 5, maker_owner_id=None if house else maker, price=price, quantity=quantity)
    settled = settle_fill(
        fill=fill,
        taker_side=side,
        taker_owner_id=taker,
        accounts=ACCOUNTS,
        rates=RATES,
        taker_discount=taker_discount,
        maker_discount=maker_discount,
        # A maker's lock taken at the settings' taker fee covers its fill: nothing else is read.
        maker_locked=D(0) if house else _maker_lock(side=side, quantity=quantity, price=price, taker_bps=12),
        maker_remaining=D(0) if house else quantity,
        available=_unread,
    )
    notional = notional_of(price=price, quantity=quantity)
    assert settled.notional == notional
    assert settled.taker_fee == calculate_fee(notional=notional, fee_bps=12, discount=taker_discount)
    assert settled.maker_fee == (
        D(0) if house else calculate_fee(notional=notional, fee_bps=8, discount=maker_discount)
    )

    balance: dict[tuple[int, int, int], Decimal] = defaultdict(Decimal)
    locked: dict[tuple[int, int, int], Decimal] = defaultdict(Decimal)
    for posting in settled.postings:
        balance[posting.wallet] += posting.balance
        locked[posting.wallet] += posting.locked
    # Conservation: what leaves one wallet arrives in others, per asset, fees included.
    for asset in (ACCOUNTS.base_id, ACCOUNTS.quote_id):
        assert sum((amount for key, amount in balance.items() if key[1] == asset), D(0)) == 0
    buyer, seller = (taker, maker) if side is Side.BUY else (maker, taker)
    buyer_fee, seller_fee = (
        (settled.taker_fee, settled.maker_fee) if side is Side.BUY else (settled.maker_fee, settled.taker_fee)
    )
    assert balance[ACCOUNTS.fee_wallet] == settled.taker_fee + settled.maker_fee
    if house:
        house_base, house_quote = balance[ACCOUNTS.house_base], balance[ACCOUNTS.house_quote]
        assert (house_base, house_quote) == ((-quantity, notional) if side is Side.BUY else (quantity, -notional))
        assert locked[ACCOUNTS.house_base] == locked[ACCOUNTS.house_quote] == 0  # the house holds no locks
    # The buyer gets the base and pays notional + fee out of its lock; the seller the reverse.
    parties = [(taker, side)] + ([] if house else [(maker, side.opposite)])
    for owner, owner_side in parties:
        base_key, quote_key = (owner, 1, 0), (owner, 2, 0)
        if owner_side is Side.BUY:
            fee = buyer_fee if owner == buyer else seller_fee
            assert (balance[base_key], balance[quote_key]) == (quantity, -(notional + fee))
            assert locked[quote_key] == -(notional + fee) and locked[base_key] == 0
        else:
            fee = seller_fee if owner == seller else buyer_fee
            assert (balance[base_key], balance[quote_key]) == (-quantity, notional - fee)
            assert locked[base_key] == -quantity and locked[quote_key] == 0
    assert settled.taker_spent == -locked[ACCOUNTS.funding(owner_id=taker, side=side)]


# --- a buy that rested under lower fees -----------------------------------------------------------
# Its lock holds the taker fee of its placing; the operator has since raised the fees
# (docs/matching.md, Fees): the maker fee beyond the lock comes from the maker's available
# quote, and what that cannot cover is not charged. The taker's side never changes.

old_taker_bps = st.integers(0, 100)
new_rates = st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)).map(
    lambda bps: FeeRates(taker_bps=max(bps), maker_bps=min(bps))
)
steps = st.integers(1, 10**6).map(lambda n: D(n).scaleb(-4))  # quantities on the 0.0001 grid
ticks = st.integers(1, 10**8).map(lambda n: D(n).scaleb(-2))  # prices on the 0.01 grid
availables = st.one_of(st.just(D(0)), st.integers(0, 10**14).map(lambda n: D(n).scaleb(-8)))


@settings(max_examples=400, deadline=None)
@given(
    price=ticks,
    parts=st.lists(steps, min_size=1, max_size=6),
    rest=st.one_of(st.just(D(0)), steps),
    old_bps=old_taker_bps,
    rates=new_rates,
    maker_discount=discounts,
    available=availables,
)
def test_a_maker_buy_short_of_its_fee_pays_from_available_then_is_capped(
    price, parts, rest, old_bps, rates, maker_discount, available
):
    """A resting buy of sum(parts) + rest filled part after part at its price, under rates
    that may exceed those its lock was taken at. Each fill: the taker's side as always; the
    maker pays notional + its fee at the new rate out of its lock while the lock keeps its
    remainder's notional, then out of its available quote, and the fee is capped at what
    that leaves; never a negative lock, balance or available; every asset conserved and the
    fee wallet credited exactly the fees recorded."""
    taker, maker = 11, 12
    maker_quote, maker_base = ACCOUNTS.trader(maker, 2), ACCOUNTS.trader(maker, 1)
    remaining = sum(parts, D(0)) + rest
    locked = buy_lock_amount(quantity=remaining, price=price, taker_fee_bps=old_bps)
    reads: list[WalletKey] = []

    def read(wallet: WalletKey) -> D:
        reads.append(wallet)
        return available

    for quantity in parts:
        notional = notional_of(price=price, quantity=quantity)
        due = calculate_fee(notional=notional, fee_bps=rates.maker_bps, discount=maker_discount)
        reserve = quantize_up((remaining - quantity) * price)  # the notional its remainder will pay
        reads.clear()
        settled = settle_fill(
            fill=Fill(maker_id=5, maker_owner_id=maker, price=price, quantity=quantity),
            taker_side=Side.SELL,
            taker_owner_id=taker,
            accounts=ACCOUNTS,
            rates=rates,
            taker_discount=D(0),
            maker_discount=maker_discount,
            maker_locked=locked,
            maker_remaining=remaining,
            available=read,
        )
        balance: dict[WalletKey, D] = defaultdict(D)
        lock_change: dict[WalletKey, D] = defaultdict(D)
        for posting in settled.postings:
            balance[posting.wallet] += posting.balance
            lock_change[posting.wallet] += posting.locked
        for asset in (ACCOUNTS.base_id, ACCOUNTS.quote_id):
            assert sum((amount for key, amount in balance.items() if key[1] == asset), D(0)) == 0
        assert balance[ACCOUNTS.fee_wallet] == settled.taker_fee + settled.maker_fee
        assert settled.taker_fee == calculate_fee(notional=notional, fee_bps=rates.taker_bps)
        assert balance[ACCOUNTS.trader(taker, 2)] == notional - settled.taker_fee
        assert balance[maker_base] == quantity
        assert balance[maker_quote] == -(notional + settled.maker_fee)
        assert lock_change[maker_quote] == -settled.maker_spent
        from_available = -balance[maker_quote] - settled.maker_spent
        # The lock pays first, as far as it keeps the remainder's notional.
        assert D(0) <= settled.maker_spent <= locked - reserve
        assert D(0) <= from_available <= available
        assert D(0) <= settled.maker_fee <= due
        enough = notional + due <= locked - reserve + available
        assert (settled.maker_fee == due) is enough
        if settled.maker_fee < due:  # capped: everything the maker could pay was taken
            assert (settled.maker_spent, from_available) == (locked - reserve, available)
        if notional + due <= locked - reserve:  # the lock is enough: the rest of the wallet is not read
            assert reads == [] and from_available == 0
        else:
            assert reads == [maker_quote]
        locked -= settled.maker_spent
        remaining -= quantity
        available -= from_available
    assert locked >= quantize_up(rest * price)


@settings(max_examples=200, deadline=None)
@given(price=ticks, quantity=steps, rates=new_rates, maker_discount=discounts)
def test_a_maker_lock_at_the_current_taker_fee_always_covers_its_maker_fee(price, quantity, rates, maker_discount):
    """Settings as core.checks allows them (maker <= taker): the lock of a resting buy covers
    its fill with the maker fee in full, and nothing else of its wallet is read."""
    settled = settle_fill(
        fill=Fill(maker_id=5, maker_owner_id=12, price=price, quantity=quantity),
        taker_side=Side.SELL,
        taker_owner_id=11,
        accounts=ACCOUNTS,
        rates=rates,
        taker_discount=D(0),
        maker_discount=maker_discount,
        maker_locked=buy_lock_amount(quantity=quantity, price=price, taker_fee_bps=rates.taker_bps),
        maker_remaining=quantity,
        available=_unread,
    )
    notional = notional_of(price=price, quantity=quantity)
    assert settled.maker_fee == calculate_fee(notional=notional, fee_bps=rates.maker_bps, discount=maker_discount)
    assert settled.maker_spent == notional + settled.maker_fee
