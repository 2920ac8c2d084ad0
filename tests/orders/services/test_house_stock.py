"""Funding the house's stock of one market (orders.services.wallets.house_stock_credit and
`manage.py house_stock_credit`): the deposit lands in the market's bucket, the ledger stays
balanced, and the running engine fills from it in its next batch."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from core.errors import InvalidInput
from orders.models import Deposit
from orders.services import house_stock_credit
from orders.system_accounts import house_user_id
from tests.factories import StaffFactory, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house, wallet

pytestmark = pytest.mark.django_db

D = Decimal


def fills(order: dict) -> list[tuple[str, str, str]]:
    return [(f["price"], f["quantity"], f["counterparty"]) for f in order["fills"]]


def test_a_sold_out_house_is_restocked_by_the_command_and_fills_again(market, trader, staff_client):
    fund_house(market, base="0.1")
    taker = trader(USDT="5000")
    first = taker.order(side="buy", type="market", quantity="0.1").json()
    assert (first["status"], fills(first)) == ("filled", [("2010.00000000", "0.10000000", "house")])
    sold_out = taker.order(side="buy", type="market", quantity="0.1").json()
    assert sold_out["fills"] == []  # nothing left in the market's bucket

    out = StringIO()
    call_command("house_stock_credit", market="ETH-USDT", asset="ETH", amount="5", stdout=out)
    assert "5.00000000 ETH" in out.getvalue()
    assert wallet(house_user_id(), "ETH", bucket=market.pk).balance == D("5")
    assert wallet(house_user_id(), "ETH").balance == 0  # nothing stranded in bucket 0
    deposit = Deposit.objects.get(user_id=house_user_id(), asset__symbol="ETH", amount=D("5"))
    assert deposit.bucket == market.pk

    # The same in-process engine, its market loaded: the next batch reads the new stock.
    again = taker.order(side="buy", type="market", quantity="0.1").json()
    assert (again["status"], fills(again)) == ("filled", [("2010.00000000", "0.10000000", "house")])
    assert wallet(house_user_id(), "ETH", bucket=market.pk).balance == D("4.9")
    assert_invariants()
    ledger = staff_client.get("/api/admin/ledger").json()
    assert ledger["balanced"] is True
    assert {"asset": "ETH", "credited": "5.10000000", "balances": "5.10000000", "balanced": True} in ledger["assets"]


def test_the_quote_asset_funds_the_house_buying(market, trader):
    call_command("house_stock_credit", market="ETH-USDT", asset="USDT", amount="1000", stdout=StringIO())
    seller = trader(ETH="1")
    order = seller.order(side="sell", type="market", quantity="0.1").json()
    assert (order["status"], fills(order)) == ("filled", [("1990.00000000", "0.10000000", "house")])
    assert wallet(house_user_id(), "USDT", bucket=market.pk).balance == D("801")
    assert_invariants()


def test_the_actor_is_recorded_on_the_deposit(market, staff):
    call_command("house_stock_credit", "--market=ETH-USDT", "--asset=ETH", "--amount=1", f"--actor={staff.username}",
                 stdout=StringIO())  # fmt: skip
    assert Deposit.objects.get(user_id=house_user_id()).created_by == staff


def test_only_the_markets_own_assets_fund_its_stock(market):
    market_create("BTC-USDT", reference_price="30000.00")
    with pytest.raises(InvalidInput) as refused:
        house_stock_credit(market=market, asset_symbol="BTC", amount="1")
    assert "asset" in (refused.value.fields or {})
    with pytest.raises(CommandError, match="ETH and USDT only"):
        call_command("house_stock_credit", market="ETH-USDT", asset="BTC", amount="1", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("house_stock_credit", market="NOPE-USDT", asset="USDT", amount="1", stdout=StringIO())
    with pytest.raises(CommandError, match="digits before the decimal point"):
        call_command("house_stock_credit", market="ETH-USDT", asset="ETH", amount="9" * 23, stdout=StringIO())
    with pytest.raises(CommandError, match="--actor"):
        call_command("house_stock_credit", market="ETH-USDT", asset="ETH", amount="1", actor="ghost", stdout=StringIO())
    assert not Deposit.objects.exists()


def test_staff_with_the_deposit_permission_fund_the_house_in_the_admin(market, trader):
    crediter = StaffFactory(is_superuser=False)
    crediter.user_permissions.add(*Permission.objects.filter(codename__in=["add_deposit", "view_wallet"]))
    client = Client()
    client.force_login(crediter)
    assert "/admin/orders/wallet/house-stock/" in client.get("/admin/orders/wallet/").content.decode()
    page = client.get("/admin/orders/wallet/house-stock/")
    assert page.status_code == 200
    reference = re.search(r'name="reference" value="([^"]+)"', page.text).group(1)  # the form's own

    wrong = client.post(
        "/admin/orders/wallet/house-stock/",
        {"market": market.pk, "asset": "BTC", "amount": "1", "reference": reference},
    )
    assert wrong.status_code == 200 and "ETH-USDT trades ETH and USDT only." in wrong.content.decode()
    too_large = client.post(
        "/admin/orders/wallet/house-stock/",
        {"market": market.pk, "asset": "ETH", "amount": "9" * 23, "reference": reference},
    )
    assert "at most 22 digits before the decimal point" in too_large.content.decode()
    assert not Deposit.objects.exists()

    done = client.post(
        "/admin/orders/wallet/house-stock/",
        {"market": market.pk, "asset": "ETH", "amount": "2", "reference": reference},
    )
    assert done.status_code == 302
    deposit = Deposit.objects.get()
    assert (deposit.user_id, deposit.bucket, deposit.amount, deposit.created_by) == (
        house_user_id(),
        market.pk,
        D("2"),
        crediter,
    )
    order = trader(USDT="5000").order(side="buy", type="market", quantity="0.1").json()
    assert fills(order) == [("2010.00000000", "0.10000000", "house")]
    assert_invariants()


def test_staff_without_the_deposit_permission_get_no_such_page(market):
    viewer = StaffFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_wallet"))
    client = Client()
    client.force_login(viewer)
    assert "house-stock" not in client.get("/admin/orders/wallet/").content.decode()
    assert client.get("/admin/orders/wallet/house-stock/").status_code == 403
    post = {"market": market.pk, "asset": "ETH", "amount": "2"}
    assert client.post("/admin/orders/wallet/house-stock/", post).status_code == 403
    assert not Deposit.objects.exists()
