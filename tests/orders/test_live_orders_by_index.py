"""An account's live orders (the trade page's open orders, the `orders` stream's snapshot,
the API's and the history's open filter) are read from the partial indexes that hold them
(orders.selectors.orders.status_condition), however long the account's history: with
`status IN (...)`, which matches no partial index, PostgreSQL read the account's whole
history, or every order (the 5 open orders of an account with 1,000,000 closed ones: 150-180
ms a read; 0.2 ms from the indexes)."""

from __future__ import annotations

from decimal import Decimal as D
from itertools import combinations

import pytest
from django.db import connection
from django.utils import timezone

from core.db import select_plans
from orders.models import LIVE_STATUSES, RESTING_STATUSES, Order, OrderStatus
from orders.selectors.orders import order_list_for_user, order_open_list_for_user, status_condition
from tests.factories import UserFactory, market_create

pytestmark = pytest.mark.django_db


def _orders(market, user, rows: list[tuple[str, str, str]]) -> None:
    """(side, type, status) rows, valid under the order table's checks."""
    now = timezone.now()
    orders = []
    for side, kind, status in rows:
        filled = {"filled": D("1"), "partially_filled": D("0.5")}.get(status, D("0"))
        orders.append(
            Order(
                user=user,
                market=market,
                side=side,
                type=kind,
                time_in_force="IOC" if kind == "market" else "GTC",
                price=None if kind == "market" else D("2000"),
                stop_price=D("1900") if kind == "stop_loss" else None,
                quantity=D("1"),
                filled_quantity=filled,
                locked_amount=D("1") if status in {s.value for s in LIVE_STATUSES} else D("0"),
                status=status,
                request_fingerprint="x",
                created_at=now,
                updated_at=now,
            )
        )
    Order.objects.bulk_create(orders)


def _history(market, user, count: int) -> None:
    """`count` filled orders of `user`, in one statement (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO orders_order (side, type, time_in_force, stp, price, quantity, filled_quantity,"
            " quote_filled, fee_paid, locked_amount, status, request_fingerprint, created_at, updated_at,"
            " market_id, user_id) SELECT 'buy', 'limit', 'GTC', 'skip', 2000, 1, 1, 2000, 0, 0, 'filled', 'x',"
            " now(), now(), %s, %s FROM generate_series(1, %s)",
            [market.pk, user.pk, count],
        )


CASES = [
    ("buy", "limit", "open"),
    ("sell", "limit", "open"),
    ("buy", "limit", "partially_filled"),
    ("sell", "limit", "partially_filled"),
    ("sell", "stop_loss", "pending_trigger"),
    ("buy", "limit", "filled"),
    ("sell", "limit", "cancelled"),
    ("buy", "market", "expired"),
]


def test_a_status_filter_selects_what_status_in_selects():
    market = market_create("ETH-USDT")
    user = UserFactory()
    _orders(market, user, CASES)
    for size in range(1, 4):
        for statuses in combinations([s.value for s in OrderStatus], size):
            by_index = set(Order.objects.filter(status_condition(statuses)).values_list("pk", flat=True))
            plain = set(Order.objects.filter(status__in=statuses).values_list("pk", flat=True))
            assert by_index == plain, statuses
    live = {s.value for s in LIVE_STATUSES}
    assert {o.status for o in order_open_list_for_user(user_id=user.pk, market_id=market.pk)} == live
    assert {o.status for o in order_list_for_user(user_id=user.pk, statuses=RESTING_STATUSES)} == {
        "open",
        "partially_filled",
    }
    assert [o.status for o in order_list_for_user(user_id=user.pk, status="pending_trigger")] == ["pending_trigger"]


@pytest.mark.postgres
def test_an_account_with_a_long_history_has_its_live_orders_read_from_the_partial_indexes():
    market = market_create("ETH-USDT")
    bot = UserFactory()
    _history(market, bot, 60_000)
    _orders(market, bot, CASES[:5])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order")
    reads = {
        "trade page": lambda: list(order_open_list_for_user(user_id=bot.pk, market_id=market.pk)[:51]),
        "orders stream": lambda: list(order_list_for_user(user_id=bot.pk, statuses=LIVE_STATUSES).order_by("-id")),
        "history, open": lambda: list(order_list_for_user(user_id=bot.pk, statuses=RESTING_STATUSES)[:25]),
        "api, open": lambda: list(order_list_for_user(user_id=bot.pk, status="open").order_by("-id")[:51]),
    }
    for name, read in reads.items():
        plans = select_plans(read, table="orders_order")
        first = plans[0]
        assert "Seq Scan on orders_order" not in first and "order_user_recent" not in first, (name, first)
        assert "order_book_" in first, (name, first)
    assert len(reads["orders stream"]()) == 5
