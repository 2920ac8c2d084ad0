from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import IntegrityError, transaction
from django.db.models import F
from rest_framework.renderers import JSONRenderer

from orders.api.serializers import LedgerAssetOutput
from orders.models import Deposit, Market, Wallet
from orders.selectors.ledger import ledger_check
from orders.services import wallet_credit
from orders.system_accounts import fee_account_user_id, house_user_id
from tests.conftest import jwt_client
from tests.factories import StaffFactory, asset_get, fund, market_create

pytestmark = pytest.mark.django_db


def _wallet(user, symbol="USDT") -> Wallet:
    fund(user, symbol, "100")
    return Wallet.objects.get(user=user, asset__symbol=symbol, bucket=0)


def test_database_refuses_negative_balance(user):
    wallet = _wallet(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(balance=F("balance") - Decimal("100.00000001"))


def test_database_refuses_locked_above_balance(user):
    wallet = _wallet(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(locked=Decimal("100.00000001"))


def test_database_refuses_negative_locked(user):
    wallet = _wallet(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(locked=Decimal("-1"))


def test_database_refuses_second_wallet_for_same_asset(user):
    wallet = _wallet(user)
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.create(user=user, asset=wallet.asset, bucket=0)


def test_credit_records_deposit_and_ledger_balances(user, other_user):
    fund(user, "USDT", "100.5")
    fund(user, "USDT", "0.00000001")
    fund(other_user, "ETH", "2")
    assert Wallet.objects.get(user=user, asset__symbol="USDT").balance == Decimal("100.50000001")
    assert Deposit.objects.filter(user=user).count() == 2
    report = {row.asset: row for row in ledger_check()}
    assert report["USDT"].credited == report["USDT"].balances == Decimal("100.50000001")
    assert report["ETH"].balanced


def test_ledger_detects_money_created_outside_a_deposit(user):
    fund(user, "USDT", "10")
    Wallet.objects.filter(user=user).update(balance=F("balance") + 1)
    report = {row.asset: row for row in ledger_check()}
    assert not report["USDT"].balanced


@pytest.mark.parametrize("amount", ["0", "-1", "1.000000001", "abc", "NaN", "Infinity", None, True, [], "1e40"])
def test_credit_rejects_bad_amounts(user, amount):
    asset_get("USDT")
    from orders.errors import InvalidAmount

    with pytest.raises(InvalidAmount):
        wallet_credit(username=user.username, asset_symbol="USDT", amount=amount)


def test_staff_credit_endpoint(staff_client, user):
    asset_get("ETH")
    response = staff_client.post(
        "/api/admin/wallets/credit", {"username": user.username, "asset": "ETH", "amount": "1.25"}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {
        "asset": "ETH",
        "balance": "1.25000000",
        "available": "1.25000000",
        "locked": "0.00000000",
    }
    answer = staff_client.get("/api/admin/ledger")
    ledger = answer.json()
    assert ledger["balanced"] is True
    # The bytes the view wrote as a hand-built dict before (issue 20).
    assets = ledger_check()
    assert answer.content == JSONRenderer().render(
        {"balanced": all(a.balanced for a in assets), "assets": LedgerAssetOutput(assets, many=True).data}
    )
    assert {"asset": "ETH", "credited": "1.25000000", "balances": "1.25000000", "balanced": True} in ledger["assets"]


def test_staff_credit_unknown_user_and_asset(staff_client, user):
    asset_get("ETH")
    unknown_user = staff_client.post(
        "/api/admin/wallets/credit", {"username": "ghost", "asset": "ETH", "amount": "1"}, format="json"
    )
    assert unknown_user.status_code == 400
    assert unknown_user.json()["error"]["code"] == "user_not_found"
    unknown_asset = staff_client.post(
        "/api/admin/wallets/credit", {"username": user.username, "asset": "DOGE", "amount": "1"}, format="json"
    )
    assert unknown_asset.json()["error"]["code"] == "asset_not_found"


def _refused_for_username(answer) -> str:
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["code"] == "validation_error" and set(error["fields"]) == {"username"}, error
    return " ".join(error["fields"]["username"])


@pytest.mark.parametrize("account", ["house", "fee"])
def test_staff_credit_refuses_the_platform_accounts(staff_client, account):
    """Crediting the house answered 200 {"balance": "5"} but landed in bucket 0, which no
    market's auto-fill reads: the money was stranded and the answer said the house had it."""
    market_create("BTC-USDT", reference_price="30000.00")
    user_id = house_user_id() if account == "house" else fee_account_user_id()
    username = get_user_model().objects.get(pk=user_id).username
    answer = staff_client.post(
        "/api/admin/wallets/credit", {"username": username, "asset": "BTC", "amount": "5"}, format="json"
    )
    assert "manage.py house_stock_credit" in _refused_for_username(answer)
    assert not Deposit.objects.exists() and not Wallet.objects.filter(user_id=user_id).exists()


def test_staff_credit_refuses_a_closed_account(staff_client, user):
    asset_get("USDT")
    user.is_active = False
    user.save(update_fields=["is_active"])
    answer = staff_client.post(
        "/api/admin/wallets/credit", {"username": user.username, "asset": "USDT", "amount": "5"}, format="json"
    )
    assert "closed" in _refused_for_username(answer)
    assert not Deposit.objects.exists()


@pytest.mark.parametrize("superuser", [False, True])
def test_staff_cannot_credit_their_own_account(superuser, user):
    """A staff member with only orders.add_deposit credited itself 1,000,000 USDT. Four eyes:
    another staff member credits a staff account, a superuser's included."""
    asset_get("USDT")
    crediter = StaffFactory(is_superuser=superuser)
    if not superuser:
        crediter.user_permissions.add(Permission.objects.get(codename="add_deposit"))
    api = jwt_client(crediter)
    own = {"username": crediter.username, "asset": "USDT", "amount": "1000000"}
    mine = api.post("/api/admin/wallets/credit", own, format="json")
    assert "own account" in _refused_for_username(mine)
    assert not Deposit.objects.exists()
    theirs = api.post(
        "/api/admin/wallets/credit", {"username": user.username, "asset": "USDT", "amount": "5"}, format="json"
    )
    assert theirs.status_code == 200
    assert Deposit.objects.get().created_by == crediter


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("99999999999999999999999", "Too large: at most 22 digits before the decimal point."),
        ("1.000000001", "At most 8 decimal places."),
        ("abc", 'Must be a positive decimal number, such as "1.5".'),
        ("0", "Must be positive."),
    ],
)
def test_a_refused_credit_amount_says_what_is_wrong(staff_client, user, amount, message):
    """An amount above the column's maximum was refused with "at most 8 decimal places"."""
    asset_get("USDT")
    answer = staff_client.post(
        "/api/admin/wallets/credit", {"username": user.username, "asset": "USDT", "amount": amount}, format="json"
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["fields"], error["message"]) == ("invalid_amount", {"amount": [message]},
                                                                  f"Invalid amount. {message}")  # fmt: skip


def test_reference_price_endpoint(staff_client):
    market_create("ETH-USDT")
    ok = staff_client.post("/api/admin/markets/ETH-USDT/reference-price", {"price": "2100.50"}, format="json")
    assert ok.status_code == 200
    assert ok.json()["reference_price"] == "2100.50000000"
    off_tick = staff_client.post("/api/admin/markets/ETH-USDT/reference-price", {"price": "2100.505"}, format="json")
    assert off_tick.status_code == 400
    assert off_tick.json()["error"]["code"] == "invalid_price"
    unknown = staff_client.post("/api/admin/markets/NOPE-USDT/reference-price", {"price": "1"}, format="json")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "market_not_found"


def test_a_reference_price_far_from_the_reference_and_the_last_price_needs_large_move(staff_client):
    # 60.00 typed for 60000.00 was accepted: the house's next fills sold its stock at a
    # thousandth of the book's price and fired the stops they crossed.
    market_create("BTC-USDT", reference_price="60000.00")
    path = "/api/admin/markets/BTC-USDT/reference-price"
    refused = staff_client.post(path, {"price": "60.00"}, format="json")
    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    assert error["code"] == "invalid_price" and "large_move" in error["fields"]["price"][0]
    assert Market.objects.get(symbol="BTC-USDT").reference_price == Decimal("60000.00")
    assert staff_client.post(path, {"price": "89999.99"}, format="json").status_code == 200  # within 50%
    loose = staff_client.post(path, {"price": "60.00", "large_move": "yes"}, format="json")
    assert loose.status_code == 400 and loose.json()["error"]["code"] == "validation_error"
    confirmed = staff_client.post(path, {"price": "60.00", "large_move": True}, format="json")
    assert confirmed.status_code == 200 and confirmed.json()["reference_price"] == "60.00000000"


def test_a_reference_price_change_says_why_in_the_markets_history(staff_client, staff):
    """Who, when and from what were recorded, never why: a reason given is kept there too;
    one that says nothing (or hides control characters) is refused before the price moves."""
    market = market_create("ETH-USDT")
    path = "/api/admin/markets/ETH-USDT/reference-price"
    for reason in (" ", "quiet\u202eedit", "x" * 501):
        refused = staff_client.post(path, {"price": "2100.50", "reason": reason}, format="json")
        assert refused.status_code == 400 and "reason" in refused.json()["error"]["fields"], reason
    market.refresh_from_db()
    assert market.reference_price == Decimal("2000.00")
    answer = staff_client.post(
        path, {"price": "2100.50", "reason": "Index moved: ticket 12"}, format="json", HTTP_X_REQUEST_ID="rp-2"
    )
    assert answer.status_code == 200
    entry = LogEntry.objects.get(object_id=str(market.pk))
    assert (entry.user_id, entry.get_change_message()) == (
        staff.pk,
        "Reference price 2000.00000000 -> 2100.50000000 through the staff API (request rp-2); reason: Index moved: "
        "ticket 12",
    )


def test_a_reference_price_change_is_in_the_markets_history_with_who_and_from_what(staff_client, staff):
    """The reference price prices the house's fills: a change moves money, and nothing said
    who had made one. It is on the market's History page in the admin (LogEntry)."""
    market = market_create("ETH-USDT")
    before = LogEntry.objects.count()
    answer = staff_client.post(
        "/api/admin/markets/ETH-USDT/reference-price", {"price": "2100.50"}, format="json", HTTP_X_REQUEST_ID="rp-1"
    )
    assert answer.status_code == 200
    (entry,) = LogEntry.objects.all()[: LogEntry.objects.count() - before]
    assert (entry.user_id, entry.object_id, entry.action_flag) == (staff.pk, str(market.pk), CHANGE)
    assert entry.get_change_message() == (
        "Reference price 2000.00000000 -> 2100.50000000 through the staff API (request rp-1)"
    )
    refused = staff_client.post("/api/admin/markets/ETH-USDT/reference-price", {"price": "0.001"}, format="json")
    assert refused.status_code == 400 and LogEntry.objects.count() == before + 1  # nothing changed, nothing said


STAFF_ENDPOINTS = [
    ("post", "/api/admin/wallets/credit", {"username": "x", "asset": "USDT", "amount": "1"}),
    ("post", "/api/admin/markets/ETH-USDT/reference-price", {"price": "1"}),
    ("get", "/api/admin/ledger", None),
]


@pytest.mark.parametrize(("method", "path", "body"), STAFF_ENDPOINTS)
def test_staff_endpoints_refuse_anonymous_and_traders(api_client, user_client, method, path, body):
    market_create("ETH-USDT")
    anonymous = getattr(api_client, method)(path, body, format="json")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    trader = getattr(user_client, method)(path, body, format="json")
    assert trader.status_code == 403
    assert trader.json()["error"]["code"] == "permission_denied"


def test_wallet_list_shows_available_and_locked(user_client, user):
    fund(user, "USDT", "50")
    Wallet.objects.filter(user=user).update(locked=Decimal("20"))
    rows = {row["asset"]: row for row in user_client.get("/api/wallets").json()}
    assert rows["USDT"] == {
        "asset": "USDT",
        "balance": "50.00000000",
        "available": "30.00000000",
        "locked": "20.00000000",
    }
