"""A staff credit sent twice (a retried request, a double click, a command run again) is made
once when it carries its reference: the API's `Idempotency-Key`, the admin form's token, the
command's --reference (orders.services.wallets._credit)."""

from __future__ import annotations

import re
import threading
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from core.errors import InvalidInput
from orders.errors import DepositReferenceReused
from orders.models import Deposit, Wallet
from orders.services import house_stock_credit, wallet_credit
from orders.services import wallets as wallet_services
from orders.system_accounts import house_user_id
from tests.factories import StaffFactory, UserFactory, asset_get
from tests.orders.invariants import assert_invariants
from tests.orders.test_order_concurrency import run_threads

CREDIT = "/api/admin/wallets/credit"


def _balance(user, symbol: str) -> Decimal:
    return Wallet.objects.get(user=user, asset__symbol=symbol, bucket=0).balance


@pytest.mark.django_db
def test_the_api_credit_sent_again_with_its_key_is_answered_not_made_twice(staff_client, user):
    asset_get("ETH")
    body = {"username": user.username, "asset": "ETH", "amount": "1.25"}
    first = staff_client.post(CREDIT, body, format="json", HTTP_IDEMPOTENCY_KEY="ticket-4711")
    again = staff_client.post(CREDIT, body, format="json", HTTP_IDEMPOTENCY_KEY="ticket-4711")
    assert first.status_code == again.status_code == 200, again.content
    assert first.json() == again.json() and first.json()["balance"] == "1.25000000"
    assert Deposit.objects.get().reference == "ticket-4711"
    assert _balance(user, "ETH") == Decimal("1.25")

    other = staff_client.post(CREDIT, {**body, "amount": "2"}, format="json", HTTP_IDEMPOTENCY_KEY="ticket-4711")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "deposit_reference_reused"
    assert _balance(user, "ETH") == Decimal("1.25")

    # Without a key, each request is a credit of its own, as before.
    for _ in range(2):
        assert staff_client.post(CREDIT, body, format="json").status_code == 200
    assert _balance(user, "ETH") == Decimal("3.75")
    assert_invariants()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "a b", "x" * 65, "é", "1;drop"])
def test_a_malformed_idempotency_key_is_refused_before_anything_is_credited(staff_client, user, key):
    asset_get("ETH")
    body = {"username": user.username, "asset": "ETH", "amount": "1"}
    answer = staff_client.post(CREDIT, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert answer.status_code == 400, answer.content
    assert set(answer.json()["error"]["fields"]) == {"Idempotency-Key"}
    assert not Deposit.objects.exists()


@pytest.mark.django_db
def test_another_users_or_assets_credit_under_a_used_reference_is_refused(user, other_user):
    asset_get("USDT"), asset_get("ETH")
    wallet_credit(username=user.username, asset_symbol="USDT", amount="5", reference="r-1")
    for username, symbol in ((other_user.username, "USDT"), (user.username, "ETH")):
        with pytest.raises(DepositReferenceReused):
            wallet_credit(username=username, asset_symbol=symbol, amount="5", reference="r-1")
    with pytest.raises(InvalidInput):
        wallet_credit(username=user.username, asset_symbol="USDT", amount="5", reference="not one")
    assert Deposit.objects.count() == 1
    assert_invariants()


def _form_reference(page: str) -> str:
    match = re.search(r'name="reference" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


@pytest.mark.django_db
def test_the_house_stock_form_sent_twice_credits_once(market):
    crediter = StaffFactory(is_superuser=False)
    crediter.user_permissions.add(*Permission.objects.filter(codename__in=["add_deposit", "view_wallet"]))
    client = Client()
    client.force_login(crediter)
    page = "/admin/orders/wallet/house-stock/"
    form = {"market": market.pk, "asset": "ETH", "amount": "2", "reference": _form_reference(client.get(page).text)}
    assert client.post(page, form).status_code == client.post(page, form).status_code == 302  # a double click
    assert [(d.user_id, d.amount) for d in Deposit.objects.all()] == [(house_user_id(), Decimal("2"))]

    changed = client.post(page, {**form, "amount": "3"})  # back, another amount, sent again
    assert changed.status_code == 200 and "This form already made a credit" in changed.text
    assert Deposit.objects.count() == 1
    fresh = {**form, "amount": "3", "reference": _form_reference(client.get(page).text)}  # the form opened again
    assert client.post(page, fresh).status_code == 302
    assert sorted(d.amount for d in Deposit.objects.all()) == [Decimal("2"), Decimal("3")]
    assert_invariants()


@pytest.mark.django_db
def test_the_house_stock_command_run_again_with_its_reference_credits_once(market):
    arguments = {"market": "ETH-USDT", "asset": "ETH", "amount": "1", "reference": "CHG-12"}
    for _ in range(2):
        call_command("house_stock_credit", stdout=StringIO(), **arguments)
    assert Deposit.objects.get().amount == Decimal("1")
    with pytest.raises(CommandError, match="names another credit"):
        call_command("house_stock_credit", stdout=StringIO(), **{**arguments, "amount": "2"})
    assert Deposit.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_credits_under_one_reference_make_one(market, monkeypatch):
    """Eight requests with one key at once (a client retrying on timeouts): one deposit. And
    the same key for two assets at once (their locks differ, so both find it unused): one
    credit, the other refused on the constraint, its wallet change undone."""
    user = UserFactory()
    asset_get("USDT")
    answers: list[Decimal] = []
    lock = threading.Lock()

    def credit() -> None:
        wallet = wallet_credit(username=user.username, asset_symbol="USDT", amount="10", reference="same")
        with lock:
            answers.append(wallet.balance)

    assert run_threads([credit] * 8) == []
    assert answers == [Decimal("10")] * 8
    assert Deposit.objects.filter(reference="same").count() == 1

    house_user_id()  # made now: two threads making it at once would wait for each other at the barrier
    both_checked = threading.Barrier(2)
    wallets_lock = wallet_services.wallets_lock

    def lock_once_both_checked(**kwargs):
        both_checked.wait(timeout=30)
        return wallets_lock(**kwargs)

    monkeypatch.setattr(wallet_services, "wallets_lock", lock_once_both_checked)

    def house(symbol: str) -> None:
        house_stock_credit(market=market, asset_symbol=symbol, amount="1", reference="crossed")

    errors = run_threads([lambda: house("ETH"), lambda: house("USDT")])
    assert [type(error) for error in errors] == [DepositReferenceReused]
    assert Deposit.objects.filter(reference="crossed").count() == 1
    stock = Wallet.objects.filter(user_id=house_user_id(), bucket=market.pk).values_list("asset__symbol", "balance")
    assert sorted(stock) == [(Deposit.objects.get(reference="crossed").asset.symbol, Decimal("1"))]
    assert_invariants()
