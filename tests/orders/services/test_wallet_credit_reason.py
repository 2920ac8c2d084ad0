"""A staff credit says why (orders.services.wallets: `reason`, kept on the deposit): the
audit trail of money staff create had who, when and how much, never why."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client

from orders.models import Deposit, Wallet
from tests.factories import StaffFactory, UserFactory, asset_get, market_create

pytestmark = pytest.mark.django_db
CREDIT = "/api/admin/wallets/credit"
WHY = "Ticket 4711: bank transfer received, reference SEPA-20261207-88"


def test_the_api_credit_keeps_its_reason_on_the_deposit(staff_client, user):
    asset_get("USDT")
    body = {"username": user.username, "asset": "USDT", "amount": "250", "reason": f"  {WHY}\n"}
    assert staff_client.post(CREDIT, body, format="json").status_code == 200, body
    deposit = Deposit.objects.get()
    assert (deposit.user_id, deposit.amount, deposit.reason) == (user.pk, Decimal("250"), WHY)
    assert staff_client.post(CREDIT, {**body, "reason": None}, format="json").status_code == 400
    without = {key: value for key, value in body.items() if key != "reason"}
    assert staff_client.post(CREDIT, without, format="json").status_code == 200  # optional, as before
    assert Deposit.objects.order_by("pk").last().reason == ""  # type: ignore[union-attr]


@pytest.mark.parametrize("reason", [" \t ", "x" * 501, "paid\x00back", "right\u202eleft"])
def test_a_reason_that_says_nothing_or_hides_something_credits_nothing(staff_client, user, reason):
    asset_get("USDT")
    answer = staff_client.post(CREDIT, {"username": user.username, "asset": "USDT", "amount": "1", "reason": reason},
                               format="json")  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "validation_error"
    assert "reason" in answer.json()["error"]["fields"]
    assert not Deposit.objects.exists()
    assert not Wallet.objects.filter(user=user, balance__gt=0).exists()


def test_the_house_stock_form_and_command_keep_their_reason(db):
    market = market_create()
    crediter = StaffFactory(is_superuser=False)
    crediter.user_permissions.add(*Permission.objects.filter(codename__in=["add_deposit", "view_deposit"]))
    client = Client()
    client.force_login(crediter)
    page = client.get("/admin/orders/wallet/house-stock/")
    assert 'name="reason"' in page.text
    reference = re.search(r'name="reference" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"market": market.pk, "asset": "ETH", "amount": "2", "reference": reference, "reason": WHY}
    assert client.post("/admin/orders/wallet/house-stock/", form).status_code == 302
    call_command("house_stock_credit", market="ETH-USDT", asset="USDT", amount="5", reason="restock", stdout=StringIO())
    assert list(Deposit.objects.order_by("pk").values_list("amount", "reason")) == [
        (Decimal("2"), WHY),
        (Decimal("5"), "restock"),
    ]
    listed = client.get("/admin/orders/deposit/", {"q": "SEPA-20261207-88"})
    assert listed.status_code == 200 and WHY in listed.text


def test_a_credit_without_a_reason_is_made_as_before(staff_client):
    trader = UserFactory()
    asset_get("ETH")
    body = {"username": trader.username, "asset": "ETH", "amount": "1"}
    assert staff_client.post(CREDIT, body, format="json").status_code == 200
    assert Deposit.objects.get().reason == ""
