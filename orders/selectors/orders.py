from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import reduce
from operator import or_

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet

from orders.engine.money import average_price
from orders.engine.types import Counterparty, Liquidity
from orders.errors import OrderNotFound
from orders.models import (
    LIVE_STATUSES,
    RESTING_STATUSES,
    Order,
    OrderEvent,
    OrderSide,
    OrderStatus,
    OrderType,
    Trade,
)

# A trade's columns an order's contract body shows of its fills (the batch writer reads
# the same back for a cancel's answer, orders.sequencer.writer.histories_read).
FILL_FIELDS = ("id", "price", "quantity", "taker_fee", "maker_fee", "is_house", "taker_order_id", "maker_order_id")
ORDER_ID_MAX = 2**63 - 1  # a bigint: a longer number names no order

# The partial indexes that hold the live orders, and the statuses each holds. Live statuses
# spelled as their conditions are read from them (the books and the pending stops, however
# long the history): `status IN (...)` matches none, and PostgreSQL read the account's whole
# history through order_user_recent, or every order (the 5 open orders of an account with
# 1,000,000 closed ones: 150-180 ms a read, a parallel sequential scan; 0.2 ms from the indexes).
LIVE_ORDER_INDEXES: dict[str, frozenset[OrderStatus]] = {
    "order_pending_stops": frozenset({OrderStatus.PENDING_TRIGGER}),
    "order_book_bids": frozenset(RESTING_STATUSES),
    "order_book_asks": frozenset(RESTING_STATUSES),
}
_LIVE_INDEX_CONDITIONS: dict[str, Q] = {
    index.name: index.condition
    for index in Order._meta.indexes
    if index.name in LIVE_ORDER_INDEXES and isinstance(index.condition, Q)
}
LIVE_BY_INDEX: Q = reduce(or_, _LIVE_INDEX_CONDITIONS.values())


def status_condition(statuses: Iterable[str]) -> Q:
    """Orders in one of `statuses`: live ones as the conditions of the partial indexes that
    hold them (LIVE_ORDER_INDEXES), others as they are (no index: the caller's own, by user)."""
    wanted = {OrderStatus(status) for status in statuses}
    if not wanted or not wanted <= set(LIVE_STATUSES):
        return Q(status__in=sorted(wanted))
    names = [name for name, held in LIVE_ORDER_INDEXES.items() if wanted & held]
    condition = reduce(or_, (_LIVE_INDEX_CONDITIONS[name] for name in names))
    held = set().union(*(LIVE_ORDER_INDEXES[name] for name in names))
    return condition if held == wanted else condition & Q(status__in=sorted(wanted))


def _with_details(queryset: QuerySet[Order]) -> QuerySet[Order]:
    trades = Trade.objects.only(*FILL_FIELDS, "executed_at").order_by("id")
    return queryset.select_related("market").prefetch_related(
        Prefetch("events", queryset=OrderEvent.objects.order_by("id")),
        Prefetch("taker_trades", queryset=trades),
        Prefetch("maker_trades", queryset=trades),
    )


def order_get_for_user(*, user_id: int, order_id: int) -> Order:
    order = _with_details(Order.objects.filter(pk=order_id, user_id=user_id)).first()
    if order is None:
        raise OrderNotFound()
    return order


def order_list_for_user(
    *,
    user_id: int,
    status: str | None = None,
    market: str | None = None,
    statuses: Sequence[str] = (),
    order_ids: Collection[int] | None = None,
) -> QuerySet[Order]:
    """The user's orders with what their contract body shows; `order_ids`: only those of them."""
    queryset = Order.objects.filter(user_id=user_id)
    if order_ids is not None:
        queryset = queryset.filter(pk__in=order_ids)
    if status:
        queryset = queryset.filter(status_condition([status]))
    if statuses:
        queryset = queryset.filter(status_condition(statuses))
    if market:
        queryset = queryset.filter(market__symbol=market)
    return _with_details(queryset)


def order_open_list_for_user(*, user_id: int, market_id: int | None = None) -> QuerySet[Order]:
    queryset = Order.objects.filter(status_condition(LIVE_STATUSES), user_id=user_id)
    if market_id is not None:
        queryset = queryset.filter(market_id=market_id)
    return queryset.select_related("market").order_by("-id")


def order_own_liquidity_skipped(*, order: Order, limit: Decimal) -> bool:
    """Whether self-trade prevention passed over the owner's own resting orders when `order`
    executed: orders of the same owner on the other side of the market, resting when it
    arrived, at a price it would have taken (at or better than `limit`)."""
    price = {"price__lte": limit} if order.side == OrderSide.BUY else {"price__gte": limit}
    return (
        Order.objects.filter(
            user_id=order.user_id,
            market_id=order.market_id,
            side=OrderSide(order.side).opposite,
            type=OrderType.LIMIT,
            pk__lt=order.pk,
            **price,
        )
        .filter(Q(status__in=RESTING_STATUSES) | Q(closed_at__gte=order.created_at))
        .exists()
    )


@dataclass(frozen=True, slots=True)
class OrderFill:
    trade: Trade
    fee: Decimal
    liquidity: str
    counterparty: str


def order_fills(*, order: Order) -> list[OrderFill]:
    """The order's fills, from its own point of view (taker or maker), oldest first."""
    fills = [
        OrderFill(
            trade=t,
            fee=t.taker_fee,
            liquidity=Liquidity.TAKER,
            counterparty=Counterparty.HOUSE if t.is_house else Counterparty.BOOK,
        )
        for t in order.taker_trades.all()
    ] + [
        OrderFill(trade=t, fee=t.maker_fee, liquidity=Liquidity.MAKER, counterparty=Counterparty.BOOK)
        for t in order.maker_trades.all()
    ]
    fills.sort(key=lambda fill: fill.trade.pk)
    return fills


def order_average_price(*, order: Order) -> Decimal | None:
    return average_price(quote=order.quote_filled, quantity=order.filled_quantity)


@dataclass(frozen=True, slots=True)
class UserFill:
    """A trade seen from one of its two users: the trade page's fills, GET /api/trades and
    the `fills` stream (the attributes are UserTradeOutput's fields)."""

    trade: Trade
    side: str
    fee: Decimal
    liquidity: str
    order_pk: int | None

    @property
    def trade_id(self) -> str:
        return str(self.trade.pk)

    @property
    def order_id(self) -> str:
        return str(self.order_pk)

    @property
    def market(self) -> str:
        return self.trade.market.symbol

    @property
    def price(self) -> Decimal:
        return self.trade.price

    @property
    def quantity(self) -> Decimal:
        return self.trade.quantity

    @property
    def executed_at(self) -> datetime:
        return self.trade.executed_at


def trade_user_fill(*, trade: Trade, user_id: int) -> UserFill:
    as_taker = trade.taker_user_id == user_id
    return UserFill(
        trade=trade,
        side=trade.taker_side if as_taker else OrderSide(trade.taker_side).opposite.value,
        fee=trade.taker_fee if as_taker else trade.maker_fee,
        liquidity=(Liquidity.TAKER if as_taker else Liquidity.MAKER).value,
        order_pk=trade.taker_order_id if as_taker else trade.maker_order_id,
    )


def fill_list_for_user(*, user_id: int, market: str | None = None, limit: int) -> list[UserFill]:
    """The user's last `limit` fills, newest first."""
    trades = trade_list_for_user(user_id=user_id, market=market).order_by("-id")[:limit]
    return [trade_user_fill(trade=trade, user_id=user_id) for trade in trades]


def trade_list_for_user(*, user_id: int, market: str | None = None) -> QuerySet[Trade]:
    queryset = Trade.objects.filter(Q(taker_user_id=user_id) | Q(maker_user_id=user_id))
    if market:
        queryset = queryset.filter(market__symbol=market)
    return queryset.select_related("market")


def trade_list_for_market(*, market_id: int, limit: int) -> list[Trade]:
    return list(Trade.objects.filter(market_id=market_id).order_by("-id")[:limit])


def order_get_for_user_by_client_id(*, user_id: int, client_order_id: str) -> Order:
    """The caller's order with this client_order_id (unique per user); OrderNotFound else."""
    order = _with_details(Order.objects.filter(user_id=user_id, client_order_id=client_order_id)).first()
    if order is None:
        raise OrderNotFound()
    return order


def order_search_condition(*, term: str) -> Q:
    """The orders an operator's search term names, exactly: the order's id, its client id
    (any user's), or a username (that user's orders). Each part is read through an index
    (the id, `order_client_order_id_unique_per_user`, `order_user_recent`), the username
    looked up first so that the three stay on one table; substrings of the username and
    the client id read every order (0.55 s a search at 1,000,000 orders on PostgreSQL)."""
    term = term.strip()
    condition = Q(client_order_id=term)
    if term.isascii() and term.isdigit() and int(term) <= ORDER_ID_MAX:
        condition |= Q(pk=int(term))
    users = list(get_user_model().objects.filter(username=term).values_list("pk", flat=True))
    if users:
        condition |= Q(user_id__in=users)
    return condition
