"""Deactivating an account closes it for trading (orders.services.users.user_deactivate):
its live orders are cancelled in every market, pending stops included, from the user
admin's change form or its list action. Before, a deactivated trader could no longer sign
in or place, but its resting orders kept trading."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import api_key_create
from accounts.tokens import token_pair_issue
from orders.admin import DEACTIVATED_BY_ACTION
from orders.models import Order
from orders.services.users import user_deactivate
from tests.factories import UserFactory
from tests.orders.invariants import assert_invariants
from tests.orders.support import live_order_ids, resting_trader

pytestmark = pytest.mark.django_db

ACTION = "deactivate_and_cancel_orders"


def _form(user: Any, **changes: str) -> dict[str, Any]:
    form = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-12-05",
        "date_joined_1": "10:00:00",
    }
    return {**form, **changes}


def _messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_a_deactivated_traders_orders_are_cancelled_and_no_longer_trade(two_markets, trader):
    alice = resting_trader()
    bob = trader(ETH="1", USDT="100000")
    cancelled = user_deactivate(user=alice.user)
    alice.user.refresh_from_db()
    assert not alice.user.is_active
    assert len(cancelled) == 3 and live_order_ids(alice.user) == set()
    assert set(Order.objects.filter(pk__in=cancelled).values_list("status_reason", flat=True)) == {"user_cancelled"}
    assert alice.wallet("USDT").locked == 0 and alice.wallet("BTC").locked == 0
    # What crossed alice's orders before now rests or finds the house, never alice.
    sold = bob.order(side="sell", type="limit", quantity="0.1", price="1900.00", time_in_force="GTC").json()
    assert sold["status"] == "open", sold
    # Running it again cancels nothing more, and is no error.
    assert user_deactivate(user=alice.user) == []
    assert_invariants()


def test_a_deactivated_account_reactivated_has_no_api_key_nor_refresh_token_left(two_markets):
    """Refused while inactive, both came back with a reactivation: an account closed because a
    key or a session leaked was reopened with them."""
    alice = resting_trader()
    api_key_create(user=alice.user, label="bot", permissions=["read", "trade"])
    refresh = token_pair_issue(user=alice.user)["refresh"]
    user_deactivate(user=alice.user)
    get_user_model().objects.filter(pk=alice.user.pk).update(is_active=True)
    assert not ApiKey.objects.filter(user=alice.user).exists()
    answer = APIClient().post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
    assert answer.status_code == 401, answer.content


def test_unticking_active_in_the_change_form_cancels_the_orders(two_markets, admin_client):
    alice = resting_trader()
    response = admin_client.post(f"/admin/auth/user/{alice.user.pk}/change/", _form(alice.user), follow=True)
    assert response.status_code == 200
    alice.user.refresh_from_db()
    assert not alice.user.is_active and live_order_ids(alice.user) == set()
    assert f"{alice.user.username} is deactivated; 3 open order(s) cancelled." in _messages(response)
    # Saving the inactive account again, or another field of it, cancels nothing and says nothing.
    again = admin_client.post(f"/admin/auth/user/{alice.user.pk}/change/", _form(alice.user, email="a@example.com"))
    assert again.status_code == 302
    assert_invariants()


def test_the_list_action_deactivates_and_cancels(two_markets, trader, admin_client):
    alice, carol = resting_trader(), trader(USDT="1000")
    idle = UserFactory()
    response = admin_client.post(
        "/admin/auth/user/",
        {"action": ACTION, "_selected_action": [alice.user.pk, carol.user.pk, idle.pk]},
        follow=True,
    )
    assert response.status_code == 200
    texts = _messages(response)
    assert f"{alice.user.username} is deactivated; 3 open order(s) cancelled." in texts
    assert f"{carol.user.username} is deactivated; 0 open order(s) cancelled." in texts
    for user in (alice.user, carol.user, idle):
        user.refresh_from_db()
        assert not user.is_active
    assert live_order_ids(alice.user) == set()
    assert_invariants()


def test_the_list_action_is_written_to_each_accounts_history(market, trader, client):
    """The change form's deactivation is in the account's History (Django's record of the
    form); the list action's was nowhere: who closed an account, and when, was unknown."""
    editor = UserFactory(is_staff=True)
    editor.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="auth", codename__in=["change_user", "view_user"])
    )
    client.force_login(editor)
    alice, staff = trader(USDT="1000"), UserFactory(is_staff=True)
    alice.order(side="buy", type="limit", quantity="0.1", price="1900.00")
    client.post("/admin/auth/user/", {"action": ACTION, "_selected_action": [alice.user.pk, staff.pk]})
    record = LogEntry.objects.get()  # the refused staff account: nothing changed, nothing written
    assert (record.user_id, record.object_id, record.action_flag) == (editor.pk, str(alice.user.pk), CHANGE)
    assert record.get_change_message() == f"{DEACTIVATED_BY_ACTION}; 1 open order(s) cancelled."
    history = client.get(f"/admin/auth/user/{alice.user.pk}/history/")
    assert DEACTIVATED_BY_ACTION in history.content.decode()


def test_the_list_action_says_why_and_refuses_a_reason_that_says_nothing(market, trader, admin_client):
    alice, bob = trader(USDT="1000"), trader(USDT="1000")
    page = admin_client.get("/admin/auth/user/")
    assert 'name="reason"' in page.content.decode()  # beside the action
    refused = admin_client.post(
        "/admin/auth/user/", {"action": ACTION, "_selected_action": [alice.user.pk], "reason": "\u200b \t"}, follow=True
    )
    assert any(text.startswith("Nothing was deactivated, the reason is refused") for text in _messages(refused))
    alice.user.refresh_from_db()
    assert alice.user.is_active and not LogEntry.objects.exists()
    admin_client.post(
        "/admin/auth/user/",
        {"action": ACTION, "_selected_action": [alice.user.pk, bob.user.pk], "reason": " Chargeback  fraud, case 77 "},
    )
    assert sorted(LogEntry.objects.values_list("object_id", "change_message")) == sorted(
        (str(user.pk), f"{DEACTIVATED_BY_ACTION}; 0 open order(s) cancelled; reason: Chargeback fraud, case 77.")
        for user in (alice.user, bob.user)
    )


def test_a_user_editor_cannot_deactivate_staff_or_themselves_by_the_action(market, trader, client):
    editor = UserFactory(is_staff=True)
    editor.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="auth", codename__in=["change_user", "view_user"])
    )
    client.force_login(editor)
    staff, alice = UserFactory(is_staff=True), trader(USDT="1000")
    alice.order(side="buy", type="limit", quantity="0.1", price="1900.00")
    response = client.post(
        "/admin/auth/user/",
        {"action": ACTION, "_selected_action": [editor.pk, staff.pk, alice.user.pk]},
        follow=True,
    )
    texts = _messages(response)
    assert f"Not yours to deactivate here: {editor.username}, {staff.username}." in texts
    for user in (editor, staff):
        user.refresh_from_db()
        assert user.is_active
    alice.user.refresh_from_db()
    assert not alice.user.is_active and live_order_ids(alice.user) == set()


def test_with_no_engine_the_account_stays_inactive_and_the_action_finishes_later(
    market, trader, admin_client, settings, tmp_path
):
    alice = trader(USDT="1000")
    placed = alice.order(side="buy", type="limit", quantity="0.1", price="1900.00").json()
    settings.ENGINE_TRANSPORT = "zmq"  # an engine address nobody serves: 503 at once
    settings.ENGINE_SHARDS = f"main=*@ipc://{tmp_path}/engine.sock"
    settings.VAR_DIR = tmp_path
    response = admin_client.post(
        "/admin/auth/user/", {"action": ACTION, "_selected_action": [alice.user.pk]}, follow=True
    )
    [text] = _messages(response)
    assert "is deactivated, but its open orders could not be cancelled" in text, text
    alice.user.refresh_from_db()
    assert not alice.user.is_active and live_order_ids(alice.user) == {int(placed["id"])}
    settings.ENGINE_TRANSPORT = "inprocess"
    again = admin_client.post("/admin/auth/user/", {"action": ACTION, "_selected_action": [alice.user.pk]}, follow=True)
    assert f"{alice.user.username} is deactivated; 1 open order(s) cancelled." in _messages(again)
    assert live_order_ids(alice.user) == set()
    assert_invariants()
