"""The pure settlement module: a fill -> postings per wallet, property-tested directly."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from orders.engine import Fill, Side, calculate_fee, notional_of
from orders.engine.settlement import Accounts, FeeRates, settle_fill

D = Decimal
ACCOUNTS = Accounts(market_id=7, base_id=1, quote_id=2, house_user_id=900, fee_user_id=901)
RATES = FeeRates(taker_bps=12, maker_bps=8)
prices = st.integers(1, 10**12).map(lambda n: D(n).scaleb(-2))
quantities = st.integers(1, 10**12).map(lambda n: D(n).scaleb(-8))
discounts = st.sampled_from([D(0), D("0.1"), D("0.35"), D("0.7")])


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
