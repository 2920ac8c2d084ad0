"""The beat task orders.tasks.inactive_orders_sweep: an account deactivated without the
admin's action (a bare `save()`, a bulk update) or while no engine answered has its live
orders cancelled in every market, pending stops included, at the next run. Before, its
resting orders kept trading and its stops kept firing until staff ran the action again."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django_celery_beat.models import PeriodicTask

from core.db import select_plans
from core.periodic import PERIODIC_EXPIRE_SECONDS
from orders.models import LIVE_STATUSES, Order, OrderSide, OrderStatus
from orders.selectors.users import LIVE_BY_INDEX, LIVE_ORDER_INDEXES, user_list_inactive_with_live_orders
from orders.tasks import inactive_orders_sweep
from tests.orders.invariants import assert_invariants
from tests.orders.support import live_order_ids, resting_trader

pytestmark = pytest.mark.django_db


def test_the_sweep_cancels_the_orders_of_accounts_deactivated_without_the_admin(two_markets, trader):
    alice, carol, bob = resting_trader(), resting_trader(), resting_trader()
    dave = trader(ETH="1")  # a pending stop and nothing else
    dave.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1800.00")
    for user in (alice.user, dave.user):
        user.is_active = False
        user.save()
    get_user_model().objects.filter(pk=carol.user.pk).update(is_active=False)
    bobs = live_order_ids(bob.user)

    assert inactive_orders_sweep() == 7
    assert live_order_ids(dave.user) == set() and dave.wallet("ETH").locked == 0
    for closed in (alice, carol):
        assert live_order_ids(closed.user) == set()
        assert closed.wallet("USDT").locked == 0 and closed.wallet("ETH").locked == 0
        assert closed.wallet("BTC").locked == 0
    assert set(
        Order.objects.filter(user__in=[alice.user, carol.user, dave.user]).values_list("status_reason", flat=True)
    ) == {"user_cancelled"}
    assert live_order_ids(bob.user) == bobs  # an active account's orders are left alone
    assert inactive_orders_sweep() == 0  # idempotent: nothing is left
    assert_invariants()


def test_with_nothing_to_do_the_sweep_is_three_queries(two_markets, trader, django_assert_num_queries):
    resting_trader()  # active, with live orders
    idle = trader(USDT="1000")  # inactive, with only a cancelled order
    idle.order(side="buy", type="limit", quantity="0.1", price="1900.00")
    assert idle.api.post("/api/orders/cancel-all", {}, format="json").status_code == 200
    idle.user.is_active = False
    idle.user.save()
    assert inactive_orders_sweep() == 0  # revokes the refresh token idle's client logged in with
    # The inactive accounts' API keys and live refresh tokens (none left), their live orders.
    with django_assert_num_queries(3):
        assert inactive_orders_sweep() == 0


def test_with_no_engine_the_orders_stay_live_and_the_next_run_cancels_them(two_markets, settings, tmp_path, caplog):
    alice, carol = resting_trader(), resting_trader()
    get_user_model().objects.filter(pk__in=[alice.user.pk, carol.user.pk]).update(is_active=False)
    live = live_order_ids(alice.user) | live_order_ids(carol.user)
    settings.ENGINE_TRANSPORT = "zmq"  # an engine address nobody serves: 503 at once
    settings.ENGINE_SHARDS = f"main=*@ipc://{tmp_path}/engine.sock"
    settings.VAR_DIR = tmp_path
    with caplog.at_level(logging.WARNING, logger="orders.services.users"):
        assert inactive_orders_sweep() == 0
    # One warning, not one per account: the run stops at the first engine that does not answer.
    [warning] = [record for record in caplog.records if record.name == "orders.services.users"]
    assert warning.levelno == logging.WARNING and "no engine answered" in warning.getMessage()
    assert live_order_ids(alice.user) | live_order_ids(carol.user) == live
    settings.ENGINE_TRANSPORT = "inprocess"
    assert inactive_orders_sweep() == 6
    assert live_order_ids(alice.user) == set() and live_order_ids(carol.user) == set()
    assert_invariants()


def test_the_sweep_is_scheduled_every_minute():
    task = PeriodicTask.objects.get(task="orders.tasks.inactive_orders_sweep")
    assert task.enabled and task.expire_seconds == PERIODIC_EXPIRE_SECONDS  # a backlog runs once: core.periodic
    assert (task.interval.every, task.interval.period) == (60, "seconds")


def _holds(condition: Q, row: dict[str, str]) -> bool:
    """Whether `row` (field -> value) meets `condition` (exact and __in lookups only)."""
    met = []
    for child in condition.children:
        if isinstance(child, Q):
            met.append(_holds(child, row))
        elif child[0].endswith("__in"):
            met.append(row[child[0].removesuffix("__in")] in child[1])
        else:
            met.append(row[child[0]] == child[1])
    held = any(met) if condition.connector == Q.OR else all(met)
    return not held if condition.negated else held


def test_the_partial_indexes_conditions_are_the_live_statuses():
    """LIVE_BY_INDEX, the three partial indexes' conditions, selects what LIVE_STATUSES names."""
    assert len(LIVE_BY_INDEX.children) == len(LIVE_ORDER_INDEXES)
    for side in OrderSide:
        for status in OrderStatus:
            row = {"side": side.value, "status": status.value}
            assert _holds(LIVE_BY_INDEX, row) == (status in LIVE_STATUSES), row


# --------------------------------------------------------------------------- at scale (PostgreSQL)

SCALE_USERS, SCALE_HISTORY, SCALE_LIVE = 10_000, 10, 2_000  # 1 account in 50 inactive


@pytest.fixture
def at_scale(market) -> None:
    """Accounts with histories of closed orders (inactive ones and a few long histories of
    inactive accounts among them), and live orders of active accounts only."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,"
            " is_active, date_joined) SELECT '!', false, 'scale' || g, '', '', '', false, g %% 50 <> 0, now()"
            " FROM generate_series(1, %s) g",
            [SCALE_USERS],
        )
        columns = (
            "side, type, time_in_force, stp, price, quantity, filled_quantity, quote_filled, fee_paid,"
            " locked_amount, status, request_fingerprint, created_at, updated_at, market_id, user_id"
        )
        closed = (
            f"SELECT 'buy', 'limit', 'GTC', 'skip', 1900, 1, 0, 0, 0, 0, 'cancelled', 'x', now(), now(), {market.pk}"
        )
        cursor.execute(
            f"INSERT INTO orders_order ({columns}) {closed}, u.id FROM auth_user u,"
            " generate_series(1, %s) g WHERE u.username LIKE 'scale%%'",
            [SCALE_HISTORY],
        )
        cursor.execute(
            f"INSERT INTO orders_order ({columns}) {closed}, u.id FROM (SELECT id FROM auth_user"  # noqa: S608
            " WHERE username LIKE 'scale%%' AND NOT is_active ORDER BY id LIMIT 5) u, generate_series(1, 10000) g"
        )
        cursor.execute(
            "UPDATE orders_order SET status = 'open', locked_amount = 190 WHERE id IN (SELECT o.id FROM"
            " orders_order o JOIN auth_user a ON a.id = o.user_id WHERE a.is_active AND o.id %% 7 = 0 LIMIT %s)",
            [SCALE_LIVE],
        )
        cursor.execute("ANALYZE orders_order")  # what autovacuum does after such a load
        cursor.execute("ANALYZE auth_user")


@pytest.mark.postgres
def test_with_nothing_to_do_at_scale_the_sweep_reads_orders_by_an_index(at_scale):
    """No scan of the order table: here the live orders are read from the book's and the
    stops' partial indexes (or, were it cheaper, each inactive account's orders from
    order_user_recent). With `status IN (...)` the planner scanned every order: over 1.2
    million orders, 16,000 of them live across 10,000 pages, 127-147 ms against 33 ms."""
    [plan] = select_plans(user_list_inactive_with_live_orders, table="orders_order")
    assert "Seq Scan on orders_order" not in plan, plan
    assert "order_book_bids" in plan or "order_user_recent" in plan, plan
    assert user_list_inactive_with_live_orders() == []
