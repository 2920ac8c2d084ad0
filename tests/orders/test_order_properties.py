"""Random order streams from four traders, through the services and the database.

Each example gets a fresh market with its own two assets (so examples never see each
other's money), four fresh traders (some holding TTX, for fee discounts), optionally a
house inventory and a seeded book of resting orders queued at a few prices, then runs a
random stream of limit (GTC/IOC/FOK), market (IOC/FOK), stop and cancel operations, with
random self-trade prevention and the odd change of the reference price. After every
operation:

- the ledger invariants (tests/orders/invariants.py): every asset conserved, no negative
  balance, wallet locks equal to the live orders' locks, terminal orders hold nothing,
  trades add up to every order's fills, no overfill, no self-trade, FOK all or nothing,
  no market / IOC / FOK order left resting;
- for the order just placed, against the book as it was just before: it filled makers in
  price-time priority, each at the maker's price, consuming every maker of another trader
  ahead of the last one it reached; it left no other trader's order it could have
  traded with (unless self-trade prevention stopped it); a FOK expiry changed nothing;
  the expiry reason is the one the contract names;
- a refused order (insufficient funds) created nothing and locked nothing;
- no stop is left pending that the last price has reached;
- at the end: the fee account and the house hold exactly what the trades say."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ApplicationError
from orders.engine import OrderType, Side, stop_triggered
from orders.engine.requests import OrderRequest
from orders.errors import InsufficientFunds
from orders.models import RESTING_STATUSES, Market, Order, OrderStatus, Trade, Wallet
from orders.services import market_reference_price_set
from orders.services.orders import order_cancel, order_place
from orders.system_accounts import fee_account_user_id, house_user_id
from tests.factories import UserFactory, fund, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house

pytestmark = pytest.mark.django_db

D = Decimal
_symbols = itertools.count(1)

users = st.integers(0, 3)
sides = st.sampled_from(["buy", "sell"])
quantities = st.integers(1, 30).map(lambda n: f"{D(n) / 10}")  # step 0.1
stps = st.sampled_from(["skip", "skip", "expire_taker", "expire_maker", "expire_both"])
KINDS = ["limit"] * 6 + ["market"] * 2 + ["stop", "cancel", "reference"]


@st.composite
def operation(draw: st.DrawFn) -> tuple:
    kind = draw(st.sampled_from(KINDS))
    if kind == "reference":
        return (kind, draw(st.integers(96, 104)))
    user = draw(users)
    if kind == "cancel":
        return (kind, user, draw(st.integers(0, 10)))
    side = draw(sides)
    quantity = draw(quantities)
    if kind == "market":
        return (kind, user, side, quantity, draw(st.sampled_from(["IOC", "FOK"])), draw(stps))
    # Tick 1, reference 100: mostly near the seeded book (bids 98-99, asks 101-102) so
    # orders often cross it; now and then far out, beyond the 95-105 guard of market orders.
    near = st.integers(99, 102) if side == "buy" else st.integers(98, 101)
    price = draw(st.one_of(near, near, near, st.integers(90, 110)))
    if kind == "stop":
        return (
            kind,
            user,
            side,
            quantity,
            price,
            draw(st.sampled_from(["stop_loss", "take_profit"])),
            draw(st.sampled_from(["IOC", "FOK"])),
        )
    return (kind, user, side, quantity, price, draw(st.sampled_from(["GTC", "GTC", "IOC", "FOK"])), draw(stps))


operations = st.lists(operation(), min_size=6, max_size=16)
# A book to start from: GTC orders on two levels per side that do not cross, so that queues
# of several traders' orders at one price are there to be taken.
seed_orders = st.lists(
    st.tuples(users, sides, quantities, st.integers(0, 1)).map(
        lambda t: ("limit", t[0], t[1], t[2], (99 - t[3]) if t[1] == "buy" else (101 + t[3]), "GTC", "skip")
    ),
    min_size=2,
    max_size=6,
)
houses = st.one_of(st.none(), st.tuples(st.integers(0, 6), st.integers(0, 600)))
holdings = st.lists(st.tuples(st.integers(1, 30), st.integers(100, 5000)), min_size=4, max_size=4)
ttx = st.lists(st.sampled_from([None, "100", "1000"]), min_size=4, max_size=4)


@dataclass(frozen=True)
class Resting:
    id: int
    user_id: int
    side: str
    price: Decimal
    remaining: Decimal


def book_snapshot(market: Market) -> dict[str, list[Resting]]:
    """Resting orders per side in priority order: best price, then oldest."""
    rows = [
        Resting(o.pk, o.user_id, o.side, o.price, o.quantity - o.filled_quantity)
        for o in Order.objects.filter(market=market, status__in=RESTING_STATUSES)
    ]
    return {
        "buy": sorted((r for r in rows if r.side == "buy"), key=lambda r: (-r.price, r.id)),
        "sell": sorted((r for r in rows if r.side == "sell"), key=lambda r: (r.price, r.id)),
    }


def crosses(side: str, price: Decimal, limit: Decimal) -> bool:
    return price <= limit if side == "buy" else price >= limit


def check_placed(order: Order, before: dict[str, list[Resting]], market: Market, reference: Decimal) -> None:
    """The order just placed (executed at once: not a pending stop) against the book before it."""
    opposite = before["sell" if order.side == "buy" else "buy"]
    as_market = order.type != "limit"
    guard = D(django_settings.MAX_MARKET_SLIPPAGE_BPS) / 10000
    limit = (reference * (1 + guard) if order.side == "buy" else reference * (1 - guard)) if as_market else order.price
    position = {maker.id: index for index, maker in enumerate(opposite)}
    trades = list(Trade.objects.filter(taker_order=order).order_by("id"))
    book_trades = [t for t in trades if not t.is_house]
    assert trades[: len(book_trades)] == book_trades, "the house fills only after the book"

    # Price-time priority, at the makers' prices, never beyond the limit or guard.
    reached = [position[t.maker_order_id] for t in book_trades]  # KeyError: a maker not on the book before
    assert reached == sorted(set(reached)), f"makers out of priority order: {reached}"
    for trade, index in zip(book_trades, reached, strict=True):
        maker = opposite[index]
        assert trade.price == maker.price
        assert maker.user_id != order.user_id
        assert crosses(order.side, trade.price, limit)
    for trade, index in zip(book_trades[:-1], reached[:-1], strict=True):
        assert trade.quantity == opposite[index].remaining, "a maker left before the last one was not used up"
    if reached:
        skipped = [m for m in opposite[: reached[-1]] if m.user_id != order.user_id and position[m.id] not in reached]
        assert not skipped, f"other traders' makers passed over: {skipped}"

    other_crossing = [m for m in opposite if m.user_id != order.user_id and crosses(order.side, m.price, limit)]
    if order.time_in_force == "FOK":
        assert order.status in (OrderStatus.FILLED, OrderStatus.EXPIRED)
        if order.status == OrderStatus.EXPIRED:
            assert (order.status_reason, order.filled_quantity, trades) == ("fok_not_fillable", 0, [])
            assert book_snapshot(market) == before, "an expired FOK changed the book"
        return
    if order.status == OrderStatus.FILLED:
        return
    if order.status_reason == "self_trade_prevention":
        return
    # Nothing it could have traded with is left: every crossing order of someone else was used up.
    left = {m.id for m in book_snapshot(market)["sell" if order.side == "buy" else "buy"]}
    assert not [m for m in other_crossing if m.id in left], "a crossing order of another trader is left"
    if as_market:
        assert order.status == OrderStatus.EXPIRED
        beyond = any(m.user_id != order.user_id and not crosses(order.side, m.price, limit) for m in opposite)
        assert order.status_reason == ("slippage_guard" if beyond else "no_liquidity")
    elif order.time_in_force == "IOC":
        assert (order.status, order.status_reason) == (OrderStatus.EXPIRED, "ioc_remainder")
    else:
        assert order.status in RESTING_STATUSES


def wallets_of(user) -> list[tuple]:
    return list(Wallet.objects.filter(user=user).order_by("pk").values_list("pk", "balance", "locked"))


def run_operation(op: tuple, *, market: Market, traders: list) -> None:
    kind = op[0]
    if kind == "reference":
        market_reference_price_set(symbol=market.symbol, price=str(op[1]))
        return
    user = traders[op[1]]
    if kind == "cancel":
        live = list(
            Order.objects.filter(
                user=user, market=market, status__in=["open", "partially_filled", "pending_trigger"]
            ).order_by("id")
        )
        if live:
            target = live[op[2] % len(live)]
            order_cancel(user=user, order_id=target.pk)
            target.refresh_from_db()
            assert (target.status, target.status_reason, target.locked_amount) == ("cancelled", "user_cancelled", 0)
        return

    if kind == "limit":
        _, _, side, quantity, price, tif, stp = op
        request = OrderRequest(
            market=market.symbol,
            side=side,
            type="limit",
            quantity=quantity,
            price=str(price),
            time_in_force=tif,
            stp=stp,
        )
    elif kind == "market":
        _, _, side, quantity, tif, stp = op
        request = OrderRequest(
            market=market.symbol, side=side, type="market", quantity=quantity, time_in_force=tif, stp=stp
        )
    else:
        _, _, side, quantity, stop_price, stop_type, tif = op
        request = OrderRequest(
            market=market.symbol,
            side=side,
            type=stop_type,
            quantity=quantity,
            stop_price=str(stop_price),
            time_in_force=tif,
        )

    market.refresh_from_db()
    before = book_snapshot(market)
    orders_before = Order.objects.filter(market=market).count()
    wallets_before = wallets_of(user)
    try:
        result = order_place(user=user, request=request)
    except InsufficientFunds:
        assert Order.objects.filter(market=market).count() == orders_before, "a refused order was created"
        assert wallets_of(user) == wallets_before, "a refused order moved or locked funds"
        return
    order = Order.objects.get(pk=result.order_id)
    assert result.created
    assert order.status != OrderStatus.ERROR, order.status_reason
    if order.type in ("limit", "market") or order.triggered_at is not None:
        check_placed(order, before, market, market.reference_price)
    else:
        # a stop the last price has not reached: it waits, off the book
        assert order.status == OrderStatus.PENDING_TRIGGER
        assert book_snapshot(market) == before


def check_no_stop_left_behind(market: Market) -> None:
    market.refresh_from_db()
    if market.last_price is None:
        return
    for stop in Order.objects.filter(market=market, status=OrderStatus.PENDING_TRIGGER):
        assert not stop_triggered(
            order_type=OrderType(stop.type),
            side=Side(stop.side),
            stop_price=stop.stop_price,
            last_price=market.last_price,
        ), f"stop {stop.pk} ({stop.type} {stop.side} at {stop.stop_price}) pending at last price {market.last_price}"


def check_system_accounts(market: Market, house_start: tuple[Decimal, Decimal]) -> None:
    trades = list(Trade.objects.filter(market=market))
    fees = sum((t.taker_fee + t.maker_fee for t in trades), D(0))
    fee_wallet = Wallet.objects.filter(user_id=fee_account_user_id(), asset=market.quote, bucket=market.pk).first()
    assert (fee_wallet.balance if fee_wallet else D(0)) == fees
    base, quote = house_start
    for t in trades:
        if t.is_house:
            assert t.maker_fee == 0
            sign = -1 if t.taker_side == "buy" else 1
            base += sign * t.quantity
            quote -= sign * t.quote_amount
    held = {w.asset_id: w.balance for w in Wallet.objects.filter(user_id=house_user_id(), bucket=market.pk)}
    assert (held.get(market.base_id, D(0)), held.get(market.quote_id, D(0))) == (base, quote)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=seed_orders, ops=operations, funds=holdings, discounts=ttx, house=houses)
def test_random_order_streams_keep_every_invariant(db, seed, ops, funds, discounts, house):
    n = next(_symbols)
    market = market_create(f"B{n}-Q{n}", price_tick="1", quantity_step="0.1", min_quantity="0.1", reference_price="100")
    traders = []
    for (base, quote), holding in zip(funds, discounts, strict=True):
        trader = UserFactory()
        fund(trader, market.base.symbol, base)
        fund(trader, market.quote.symbol, quote)
        if holding:
            fund(trader, "TTX", holding)
        traders.append(trader)
    house_start = (D(0), D(0))
    if house is not None and any(house):
        fund_house(market, base=str(house[0]) if house[0] else None, quote=str(house[1]) if house[1] else None)
        house_start = (D(house[0]), D(house[1]))

    for op in [*seed, *ops]:
        try:
            run_operation(op, market=market, traders=traders)
        except ApplicationError as exc:
            raise AssertionError(f"{op} raised {exc.code}") from exc
        assert_invariants(market_id=market.pk)
        check_no_stop_left_behind(market)

    assert (
        not Order.objects.filter(market=market, status=OrderStatus.ERROR)
        .exclude(status_reason="insufficient_funds")
        .exists()
    )
    check_system_accounts(market, house_start)
