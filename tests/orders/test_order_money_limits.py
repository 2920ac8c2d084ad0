"""Exact money at the size of the columns (30 digits, 8 decimals), on both backends.

Every amount up to the column's limit is accepted or refused with a 400, never a 500;
at 1e20 scale with 8 decimals nothing is rounded: trades, fees and the ledger add up to
the last unit."""

from __future__ import annotations

import contextlib
import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.money import MAX_AMOUNT, QUANTUM, exact_arithmetic
from orders.engine import calculate_fee, notional_of
from orders.errors import InsufficientFunds
from orders.models import Trade, Wallet
from orders.selectors.ledger import ledger_check
from tests.factories import UserFactory, asset_get, fund, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import place, trader_create

D = Decimal
pytestmark = pytest.mark.django_db

# Amounts from 1e20 up to past the column limit, with up to 8 decimals.
units = st.integers(min_value=10**28, max_value=int(MAX_AMOUNT / QUANTUM) + 10**9)
big_amounts = units.map(lambda n: f"{D(n).scaleb(-8):f}")
_symbols = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(quantity=big_amounts, price=big_amounts, stop=big_amounts, side=st.sampled_from(["buy", "sell"]))
def test_amounts_up_to_the_column_limit_are_accepted_or_refused_with_400(
    quantity, price, stop, side, staff_client, market
):
    rich = trader_create(USDT="1" + "0" * 20, ETH="1" + "0" * 20)
    for body in (
        {"type": "limit", "quantity": quantity, "price": price},
        {"type": "limit", "quantity": "0.0001", "price": price},
        {"type": "market", "quantity": quantity},
        {"type": "stop_loss", "quantity": quantity, "stop_price": stop},
        {"type": "take_profit", "quantity": "1", "stop_price": stop},
    ):
        answer = rich.order(side=side, **body)
        assert answer.status_code in (201, 400), (body, answer.status_code, answer.content[:300])
        if answer.status_code == 400:
            assert answer.json()["error"]["code"] in {"insufficient_funds", "invalid_quantity", "invalid_price"}
    asset = asset_get(f"BIG{next(_symbols)}").symbol  # a fresh asset: the supply of one is bounded too
    credit = staff_client.post(
        "/api/admin/wallets/credit", {"username": rich.user.username, "asset": asset, "amount": quantity}, format="json"
    )
    assert credit.status_code in (200, 400), credit.content[:300]
    reference = staff_client.post("/api/admin/markets/ETH-USDT/reference-price", {"price": price}, format="json")
    assert reference.status_code in (200, 400), reference.content[:300]
    assert_invariants()


def test_a_credit_up_to_the_column_limit_is_exact_and_one_unit_more_is_refused(staff_client):
    user = UserFactory()
    market_create("ETH-USDT")
    credit = staff_client.post(
        "/api/admin/wallets/credit",
        {"username": user.username, "asset": "USDT", "amount": str(MAX_AMOUNT)},
        format="json",
    )
    assert credit.status_code == 200, credit.content
    assert credit.json()["balance"] == "9999999999999999999999.99999999"
    more = staff_client.post(
        "/api/admin/wallets/credit", {"username": user.username, "asset": "USDT", "amount": "0.00000001"}, format="json"
    )
    assert more.status_code == 400
    assert more.json()["error"]["code"] == "invalid_amount"
    assert Wallet.objects.get(user=user, bucket=0, asset__symbol="USDT").balance == MAX_AMOUNT
    assert [row.balanced for row in ledger_check()] == [True, True]


@pytest.mark.parametrize(
    ("path", "field", "number", "code"),
    [
        ("/api/admin/wallets/credit", "amount", "1.000000000000000001", "invalid_amount"),
        ("/api/admin/wallets/credit", "amount", "0.30000000000000004", "invalid_amount"),
        ("/api/admin/markets/ETH-USDT/reference-price", "price", "2000.0000000000001", "invalid_price"),
    ],
)
def test_staff_amounts_sent_as_json_numbers_are_not_rounded(staff_client, path, field, number, code):
    """A JSON number with more than 8 decimals is refused, as the same text is: read as a
    float it was 1.0 / 0.3 / 2000.0 and credited or set, silently rounded (the contract:
    requests accept strings or numbers, nothing is silently rounded)."""
    user = UserFactory()
    market = market_create("ETH-USDT", reference_price="1500.00")
    body = {"username": user.username, "asset": "USDT"} if field == "amount" else {}
    raw = json.dumps(body)[:-1] + (", " if body else "") + f'"{field}": {number}}}'
    answer = staff_client.post(path, raw, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == code
    assert not Wallet.objects.filter(user=user, balance__gt=0).exists()
    market.refresh_from_db()
    assert market.reference_price == Decimal("1500.00")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    orders=st.lists(
        st.tuples(
            st.sampled_from(["buy", "sell"]),
            st.integers(min_value=10**17, max_value=10**19),  # quantity in 1e-8 units: 1e9 .. 1e11
            st.integers(min_value=10**17, max_value=3 * 10**17),  # price in 1e-8 units: 1e9 .. 3e9
            st.sampled_from(["limit", "limit", "market"]),
        ),
        min_size=4,
        max_size=12,
    )
)
def test_trading_at_1e20_scale_with_8_decimals_keeps_the_ledger_exact(orders):
    n = next(_symbols)
    market = market_create(
        f"X{n}-Y{n}",
        price_tick="0.00000001",
        quantity_step="0.00000001",
        min_quantity="0.00000001",
        reference_price="2000000000.12345678",
    )
    traders = [UserFactory() for _ in range(3)]
    for trader in traders:
        fund(trader, market.base.symbol, "123456789012.34567891")
        fund(trader, market.quote.symbol, "987654321098765432109.87654321")
    for index, (side, quantity, price, kind) in enumerate(orders):
        fields = {"side": side, "type": kind, "quantity": f"{D(quantity).scaleb(-8):f}"}
        if kind == "limit":
            fields["price"] = f"{D(price).scaleb(-8):f}"
        with contextlib.suppress(InsufficientFunds):  # resting buys at 1e20 can use a trader's all
            place(traders[index % 3], market=market.symbol, **fields)
    with exact_arithmetic():
        for trade in Trade.objects.filter(market=market):
            assert trade.quote_amount == notional_of(price=trade.price, quantity=trade.quantity)
            assert trade.taker_fee == calculate_fee(notional=trade.quote_amount, fee_bps=12)
            if not trade.is_house:
                assert trade.maker_fee == calculate_fee(notional=trade.quote_amount, fee_bps=8)
    assert all(row.balanced for row in ledger_check()), ledger_check()
    assert_invariants(market_id=market.pk)


def test_a_resting_sell_whose_fills_add_up_past_the_column_keeps_filling():
    """A resting sell's fills can add up to more quote than a column holds: its buyers'
    money comes back to them (here the seller buys back what it sold), so the sum over its
    life is bounded by price x quantity, not by the ledger. Its `quote_filled` (and
    `fee_paid`) outgrew NUMERIC(30, 8) on PostgreSQL at the fifth fill of 2e21: the batch
    failed on "numeric field overflow", the buyer's order ended in `error`, and so would
    every later order meeting that sell."""
    market = market_create("ETH-USDT")
    price = "2000000000000000000000.00"
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "6")
    fund(seller, "USDT", "50000000000000000000")
    fund(buyer, "USDT", "2100000000000000000000")
    sell = place(seller, side="sell", type="limit", quantity="6", price=price)
    for _ in range(6):
        bought = place(buyer, side="buy", type="limit", quantity="1", price=price, time_in_force="IOC")
        assert bought.status == "filled", (bought.status, bought.status_reason)
        place(seller, side="buy", type="limit", quantity="1", price=price)
        sold = place(buyer, side="sell", type="limit", quantity="1", price=price, time_in_force="IOC")
        assert sold.status == "filled", (sold.status, sold.status_reason)
    sell.refresh_from_db()
    assert sell.status == "filled"
    assert sell.quote_filled == D(price) * 6 > MAX_AMOUNT
    assert sell.fee_paid == calculate_fee(notional=D(price), fee_bps=8) * 6
    assert all(row.balanced for row in ledger_check()), ledger_check()
    assert_invariants(market_id=market.pk)
