"""accounts.admin: a staff member allowed to change users cannot make anyone (themselves
included) privileged, nor take over a superuser's or another staff member's account."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.tokens import token_pair_issue
from orders.system_accounts import fee_account_user_id, house_user_id
from tests.factories import UserFactory, market_create

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "another-long-passphrase-2026"


@pytest.fixture
def user_editor(client):
    editor = UserFactory(is_staff=True)
    editor.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="auth", codename__in=["change_user", "view_user"])
    )
    client.force_login(editor)
    return editor


def _form(user) -> dict[str, str]:
    return {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "user_permissions": [str(p.pk) for p in Permission.objects.all()[:5]],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-12-05",
        "date_joined_1": "10:00:00",
    }


def test_a_user_editor_cannot_make_themselves_or_anyone_superuser(client, user_editor):
    other = UserFactory()
    for target in (user_editor, other):
        answer = client.post(f"/admin/auth/user/{target.pk}/change/", _form(target))
        assert answer.status_code == 302, answer.content[:800]
        target.refresh_from_db()
        assert not target.is_superuser
        assert not target.user_permissions.exclude(codename__in=["change_user", "view_user"]).exists()
    other.refresh_from_db()
    assert not other.is_staff
    page = client.get(f"/admin/auth/user/{other.pk}/change/").content.decode()
    assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page


def test_a_user_editor_cannot_change_a_superusers_account_or_password(client, user_editor):
    root = UserFactory(is_staff=True, is_superuser=True)
    page = client.get(f"/admin/auth/user/{root.pk}/change/")  # viewable (view_user), not editable
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(f"/admin/auth/user/{root.pk}/change/", _form(root)).status_code == 403
    answer = client.post(
        f"/admin/auth/user/{root.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert answer.status_code == 403
    root.refresh_from_db()
    assert not root.check_password(NEW_PASSWORD)


def _shown_only(client: Any, account: Any) -> None:
    """The account's change page has no save button and its password form answers 403."""
    page = client.get(f"/admin/auth/user/{account.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    answer = client.post(
        f"/admin/auth/user/{account.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert answer.status_code == 403


def test_a_user_editor_cannot_take_over_another_staff_account(client, user_editor):
    # A staff member allowed to change users set the password of another staff account (one
    # allowed to credit wallets, orders.add_deposit), signed in as it and credited itself
    # 1,000,000 USDT through POST /api/admin/wallets/credit. A staff account is privileged
    # (it holds permissions its editor may not): only a superuser changes or deletes it.
    crediter = UserFactory(is_staff=True)
    crediter.user_permissions.add(Permission.objects.get(codename="add_deposit"))
    _shown_only(client, crediter)
    deactivate = {**_form(crediter), "is_active": ""}
    assert client.post(f"/admin/auth/user/{crediter.pk}/change/", deactivate).status_code == 403
    crediter.refresh_from_db()
    assert not crediter.check_password(NEW_PASSWORD) and crediter.is_active
    trader = UserFactory()  # an account without privileges stays editable
    answer = client.post(
        f"/admin/auth/user/{trader.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert answer.status_code == 302
    trader.refresh_from_db()
    assert trader.check_password(NEW_PASSWORD)


def test_a_superuser_still_edits_privileges(client):
    root = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(root)
    other = UserFactory()
    answer = client.post(f"/admin/auth/user/{other.pk}/change/", _form(other))
    assert answer.status_code == 302, answer.content[:800]
    other.refresh_from_db()
    assert other.is_superuser and other.is_staff


# --- the platform's own accounts (orders.system_accounts: "they cannot log in") -----------


def _system_accounts():
    return list(get_user_model().objects.filter(pk__in=[house_user_id(), fee_account_user_id()]))


@pytest.mark.parametrize("superuser", [False, True])
def test_nobody_can_give_the_house_or_the_fee_account_a_password_or_activate_it(client, superuser):
    editor = UserFactory(is_staff=True, is_superuser=superuser)
    editor.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="auth", codename__in=["change_user", "view_user"])
    )
    client.force_login(editor)
    for account in _system_accounts():
        _shown_only(client, account)
        assert (
            client.post(f"/admin/auth/user/{account.pk}/change/", {**_form(account), "is_superuser": ""}).status_code
            == 403
        )
        assert client.post(f"/admin/auth/user/{account.pk}/delete/", {"post": "yes"}).status_code == 403
        account.refresh_from_db()
        assert not account.is_active and not account.has_usable_password()


def test_a_system_account_cannot_log_in_even_with_a_password(client):
    for account in _system_accounts():
        account.set_password(NEW_PASSWORD)
        account.is_active = True
        account.save()
        answer = client.post("/login", {"username": account.username, "password": NEW_PASSWORD})
        assert answer.status_code == 401
        body = {"username": account.username, "password": NEW_PASSWORD}
        api = client.post("/api/auth/token", body, content_type="application/json")
        assert api.status_code == 401


def test_a_group_editor_cannot_grant_a_group_permissions(client):
    """Stock, a staff member allowed to change groups gave the group they belong to any
    permission (orders.add_deposit: credit themselves), or a new group every permission."""
    group = Group.objects.create(name="support")
    editor = UserFactory(is_staff=True)
    editor.groups.add(group)
    editor.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="auth", codename__in=["change_group", "view_group", "add_group"]
        )
    )
    client.force_login(editor)
    deposit = Permission.objects.get(content_type__app_label="orders", codename="add_deposit")
    answer = client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "support", "permissions": [deposit.pk]})
    assert answer.status_code == 302, answer.content[:800]
    assert not group.permissions.exists()
    assert not get_user_model().objects.get(pk=editor.pk).has_perm("orders.add_deposit")
    answer = client.post("/admin/auth/group/add/", {"name": "all", "permissions": [deposit.pk]})
    assert answer.status_code == 302, answer.content[:800]
    assert not Group.objects.get(name="all").permissions.exists()
    page = client.get(f"/admin/auth/group/{group.pk}/change/").content.decode()
    assert 'name="permissions"' not in page


def test_a_superuser_still_grants_group_permissions(client):
    group = Group.objects.create(name="desk")
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    deposit = Permission.objects.get(content_type__app_label="orders", codename="add_deposit")
    answer = client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "desk", "permissions": [deposit.pk]})
    assert answer.status_code == 302, answer.content[:800]
    assert list(group.permissions.all()) == [deposit]


def test_the_token_admin_never_shows_a_refresh_token(client):
    """simplejwt's admin showed each outstanding token's JWT: a staff member allowed to view
    them copied a superuser's live refresh token and rotated it into a superuser's access."""
    root = UserFactory(is_staff=True, is_superuser=True)
    refresh = token_pair_issue(user=root)["refresh"]
    outstanding = OutstandingToken.objects.get(user=root)
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="token_blacklist", codename__startswith="view_")
    )
    for who in (viewer, root):
        client.force_login(who)
        for path in ("/admin/token_blacklist/outstandingtoken/",
                     f"/admin/token_blacklist/outstandingtoken/{outstanding.pk}/change/"):  # fmt: skip
            page = client.get(path)
            assert page.status_code == 200, path
            assert refresh not in page.content.decode(), path
            assert refresh.split(".")[1] not in page.content.decode(), path  # not even its claims


def test_a_revoked_refresh_token_stays_revoked_whatever_the_token_admin_allows(client):
    """A refresh token is spent or revoked by its blacklist row, and by nothing else: with
    simplejwt's stock admin a staff member allowed to delete (or change) those rows made a
    logged-out refresh token rotate again (200), and the record of the revocation was gone."""
    trader = UserFactory()
    refresh = token_pair_issue(user=trader)["refresh"]
    assert APIClient().post("/api/auth/logout", {"refresh": refresh}, format="json").status_code == 205
    revoked = BlacklistedToken.objects.get(token__user=trader)
    editor = UserFactory(is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(content_type__app_label="token_blacklist"))
    client.force_login(editor)
    page = f"/admin/token_blacklist/blacklistedtoken/{revoked.pk}/"
    assert client.get(f"{page}change/").status_code == 200  # still listed and shown
    assert client.post(f"{page}delete/", {"post": "yes"}).status_code == 403
    other = token_pair_issue(user=trader)["refresh"]
    other_row = OutstandingToken.objects.exclude(pk=revoked.token_id).get(user=trader)
    assert client.post(f"{page}change/", {"token": other_row.pk}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [revoked.pk], "post": "yes"}
    assert client.post("/admin/token_blacklist/blacklistedtoken/", bulk).status_code == 200  # no such action
    assert client.post("/admin/token_blacklist/blacklistedtoken/add/", {"token": other_row.pk}).status_code == 403
    assert list(BlacklistedToken.objects.values_list("pk", "token_id")) == [(revoked.pk, revoked.token_id)]
    again = APIClient().post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
    assert again.status_code == 401
    assert APIClient().post("/api/auth/token/refresh", {"refresh": other}, format="json").status_code == 200


def test_an_account_that_made_changes_in_the_admin_is_not_deleted_with_its_history(client, admin_client):
    """An account's History rows go with it: whoever could delete users erased a (demoted)
    staff member's record of what they changed, and a superuser any staff member's. Such an
    account is deactivated instead; one without a record is deleted as before."""
    former = UserFactory(is_staff=True)
    LogEntry.objects.log_actions(
        user_id=former.pk, queryset=[market_create()], action_flag=CHANGE, change_message="Min quantity"
    )
    get_user_model().objects.filter(pk=former.pk).update(is_staff=False)  # demoted since
    unused = UserFactory()
    deleter = UserFactory(is_staff=True)
    deleter.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="auth", codename__in=["view_user", "delete_user"])
    )
    client.force_login(deleter)
    for who in (client, admin_client):  # a user manager, a superuser
        assert who.post(f"/admin/auth/user/{former.pk}/delete/", {"post": "yes"}).status_code == 403
        bulk = {"action": "delete_selected", "_selected_action": [former.pk], "post": "yes"}
        assert who.post("/admin/auth/user/", bulk).status_code == 403
        assert LogEntry.objects.filter(user_id=former.pk, change_message="Min quantity").exists()
    assert client.post(f"/admin/auth/user/{unused.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not get_user_model().objects.filter(pk=unused.pk).exists()
