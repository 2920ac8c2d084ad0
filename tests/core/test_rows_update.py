"""core.db.rows_update: one multi-row UPDATE (PostgreSQL) or one executemany (SQLite), same
result as bulk_update on every backend."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.db import rows_update
from orders.models import Wallet
from tests.factories import UserFactory, asset_get, fund

pytestmark = pytest.mark.django_db


def _wallets(count: int) -> list[Wallet]:
    users = [UserFactory() for _ in range(count)]
    for user in users:
        fund(user, "USDT", "100")
    return list(Wallet.objects.filter(user__in=users, asset=asset_get("USDT")).order_by("id"))


def test_each_row_gets_its_own_values_in_one_statement():
    wallets = _wallets(3)
    later = timezone.now() + timedelta(minutes=5)
    for index, wallet in enumerate(wallets):
        wallet.balance = Decimal("100") + Decimal(index) / 3
        wallet.locked = Decimal("0.12345678") * index
        wallet.updated_at = later
    with CaptureQueriesContext(connection) as queries:
        rows_update(objects=wallets, fields=["balance", "locked", "updated_at"])
    assert len(queries) == 1
    if connection.vendor == "postgresql":
        assert "unnest" in queries[0]["sql"]
    else:  # not bulk_update's CASE WHEN per row and field, whose compiling grew faster than the rows
        assert "CASE" not in queries[0]["sql"]
    for index, wallet in enumerate(wallets):
        stored = Wallet.objects.get(pk=wallet.pk)
        # quantized by the column (8 places), like any save
        assert stored.balance == (Decimal("100") + Decimal(index) / 3).quantize(Decimal("0.00000001"))
        assert stored.locked == Decimal("0.12345678") * index
        assert stored.updated_at == later


def test_untouched_fields_and_rows_keep_their_values():
    first, second = _wallets(2)
    first.balance = Decimal("7")
    first.locked = Decimal("999")  # changed in memory but not written: not in `fields`
    rows_update(objects=[first], fields=["balance"])
    assert Wallet.objects.get(pk=first.pk).locked == Decimal("0")
    assert Wallet.objects.get(pk=first.pk).balance == Decimal("7")
    assert Wallet.objects.get(pk=second.pk).balance == Decimal("100")


def test_database_constraints_still_guard_every_row():
    (wallet,) = _wallets(1)
    wallet.locked = wallet.balance + 1
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_update(objects=[wallet], fields=["locked"])
    assert Wallet.objects.get(pk=wallet.pk).locked == Decimal("0")


def test_nothing_to_write_issues_no_statement():
    with CaptureQueriesContext(connection) as queries:
        rows_update(objects=[], fields=["balance"])
    assert len(queries) == 0
