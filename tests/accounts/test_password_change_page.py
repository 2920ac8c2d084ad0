"""The password page: the present password first (under the failed-login policy), the new
one under the password rules; a change keeps this session and ends every other session,
every token issued before it, not the API keys."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.services import api_key_create
from accounts.tokens import token_pair_issue
from tests.accounts.api_key_support import signed_headers
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

NEW = "a-new-password-2026"


@pytest.fixture
def page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _change(page: Client, *, password: str = PASSWORD, new: str = NEW, confirm: str | None = None):
    return page.post(
        "/account/password",
        {"password": password, "new_password": new, "new_password_confirm": new if confirm is None else confirm},
    )


def test_the_nav_links_to_the_password_page(page):
    assert 'href="/account/password"' in page.get("/wallet/").content.decode()
    response = page.get("/account/password")
    assert response.status_code == 200 and 'autocomplete="current-password"' in response.content.decode()


def test_anonymous_visitors_go_to_the_login_page():
    response = Client().get("/account/password")
    assert response.status_code == 302 and response["Location"].startswith("/login")


def test_a_change_keeps_this_session_and_ends_the_others_and_the_tokens(page, user):
    other = Client()
    other.force_login(user)
    token = token_pair_issue(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token['access']}")
    assert api.get("/api/me").status_code == 200
    api_key, secret = api_key_create(user=user, label="bot", permissions=["read"])

    response = _change(page)
    assert response.status_code == 302 and response["Location"] == "/account/password"
    assert "Your password is changed" in page.get("/account/password").content.decode()
    user.refresh_from_db()
    assert user.check_password(NEW)
    assert page.get("/wallet/").status_code == 200  # this session goes on
    assert other.get("/wallet/").status_code == 302  # the other one is signed out
    assert api.get("/api/me").status_code == 401
    refreshed = APIClient().post("/api/auth/token/refresh", {"refresh": token["refresh"]}, format="json")
    assert refreshed.status_code == 401
    keyed = APIClient().get("/api/me", **signed_headers(api_key.key, secret, "GET", "/api/me"))
    assert keyed.status_code == 200  # API keys are not passwords
    login = APIClient().post("/api/auth/token", {"username": user.username, "password": NEW}, format="json")
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("case", "status", "code", "field_error"),
    [
        ("wrong present password", 401, "wrong_password", "Wrong password."),
        ("the two differ", 400, "validation_error", "The two passwords differ."),
        ("too short", 400, "weak_password", "too short"),
        ("the present one", 400, "weak_password", "other than the present one"),
    ],
)
def test_refusals_change_nothing(page, user, case, status, code, field_error):
    response = {
        "wrong present password": lambda: _change(page, password="not-it"),
        "the two differ": lambda: _change(page, confirm="something-else-2026"),
        "too short": lambda: _change(page, new="ab1"),
        "the present one": lambda: _change(page, new=PASSWORD),
    }[case]()
    html = response.content.decode()
    assert response.status_code == status and code in html and field_error in html, (response.status_code, html[-800:])
    assert "Wrong username" not in html  # a password alone was asked
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_guessing_the_present_password_is_locked_out_as_a_login(page, user):
    for _ in range(3):
        assert _change(page, password="guess").status_code == 401
    locked = _change(page)
    assert locked.status_code == 429 and locked["Retry-After"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_another_users_password_is_out_of_reach(page, user):
    """The page changes the signed-in user's password only: no field names a user."""
    bob = UserFactory()
    page.post(
        "/account/password", {"password": PASSWORD, "new_password": NEW, "new_password_confirm": NEW, "user": bob.pk}
    )
    bob.refresh_from_db()
    assert bob.check_password(PASSWORD)


def test_a_wrong_present_password_does_not_store_the_new_one(page, user):
    """A refused change is a failed login (axes records the form's fields with it): the new
    password, which the trader then sets with the right present one, was stored in clear in
    the admin's access attempts."""
    assert _change(page, password="not-the-password").status_code == 401
    assert page.post("/keys/", {"label": "bot", "password": "wrong", "form_id": "f1"}).status_code == 401
    recorded = "\n".join(AccessAttempt.objects.values_list("post_data", flat=True))
    assert recorded, "the failures are recorded"
    assert NEW not in recorded and "not-the-password" not in recorded and "wrong" not in recorded
