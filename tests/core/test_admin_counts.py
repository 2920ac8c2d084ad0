"""The admin's lists of financial records (core.admin.EstimatedCountPaginator): unfiltered,
a large table's total is PostgreSQL's estimate, read with a count that stops early; filtered
or searched, the total is exact. The order, trade, wallet and deposit lists counted every row
on each load (a scan of the whole table), as the revenue events' once did."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import admin as core_admin
from tests.factories import StaffFactory, UserFactory, fund, market_create
from tests.orders.support import place

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

LISTS = {
    "/admin/orders/order/": "orders_order",
    "/admin/orders/trade/": "orders_trade",
    "/admin/orders/wallet/": "orders_wallet",
    "/admin/orders/deposit/": "orders_deposit",
}


@pytest.fixture
def tables(monkeypatch) -> dict[str, int]:
    """Each table holds more rows than the exact count reads (lowered to 5 for the test), and
    its statistics are up to date (as autovacuum leaves them)."""
    monkeypatch.setattr(core_admin, "ESTIMATED_COUNT_FROM", 5, raising=False)
    market_create("ETH-USDT")
    for _ in range(4):
        seller, buyer = UserFactory(), UserFactory()
        fund(seller, "ETH", "10")
        fund(buyer, "USDT", "100000")
        for price in ("2000.00", "2001.00"):
            place(seller, side="sell", type="limit", quantity="0.1", price=price)
            place(buyer, side="buy", type="limit", quantity="0.1", price=price, time_in_force="IOC")
    counts = {}
    with connection.cursor() as cursor:
        for table in LISTS.values():
            cursor.execute(f"ANALYZE {table}")
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608  (the test's own names)
            counts[table] = cursor.fetchone()[0]
    assert min(counts.values()) > 5, counts
    return counts


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory(is_superuser=True))
    return client


@pytest.mark.parametrize("path", list(LISTS))
def test_an_unfiltered_list_reads_the_estimate_and_a_filtered_one_counts(path, tables, staff_client):
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(path)
    assert response.status_code == 200
    table = LISTS[path]
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper() and table in q["sql"]]
    assert len(counts) == 1 and "LIMIT 5" in counts[0], counts  # stops at 5 rows: no scan of the table
    total = response.context["cl"].result_count
    assert response.context["cl"].paginator.estimated and total == tables[table]  # ANALYZE's count, exact here
    assert f"about {total} " in response.content.decode() and "(estimated)" in response.content.decode()

    searched = staff_client.get(path, {"q": "no-such-user"})
    assert searched.context["cl"].result_count == 0 and not searched.context["cl"].paginator.estimated
    assert "(estimated)" not in searched.content.decode()
