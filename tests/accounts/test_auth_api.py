from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.test import override_settings
from rest_framework.renderers import JSONRenderer

from accounts.tokens import CREDENTIALS_CLAIM, FamilyRefreshToken
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_register_creates_user(api_client):
    response = api_client.post("/api/auth/register", {"username": "newbie", "password": PASSWORD}, format="json")
    assert response.status_code == 201
    # The bytes, key order included: the answer is the one the view wrote as a dict before (issue 20).
    assert response.content == JSONRenderer().render(
        {"id": get_user_model().objects.get(username="newbie").pk, "username": "newbie"}
    )


def test_register_rejects_taken_username_case_insensitively(api_client):
    UserFactory(username="alice")
    response = api_client.post("/api/auth/register", {"username": "Alice", "password": PASSWORD}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "username_taken"


def test_register_rejects_weak_password(api_client):
    response = api_client.post("/api/auth/register", {"username": "bob", "password": "123"}, format="json")
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "weak_password"
    assert body["fields"]["password"]
    assert not get_user_model().objects.filter(username="bob").exists()


def _tokens(api_client, username: str) -> dict[str, str]:
    response = api_client.post("/api/auth/token", {"username": username, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_token_then_me(api_client, user):
    tokens = _tokens(api_client, user.username)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    me = api_client.get("/api/me")
    assert me.content == JSONRenderer().render({"id": user.pk, "username": user.username, "is_staff": False})
    assert list(tokens) == ["access", "refresh"]


def test_wrong_password_is_invalid_credentials(api_client, user):
    response = api_client.post("/api/auth/token", {"username": user.username, "password": "nope"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_refresh_rotates_and_the_new_token_refreshes_again(api_client, user):
    tokens = _tokens(api_client, user.username)
    first = api_client.post("/api/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert first.status_code == 200
    rotated = first.json()
    assert list(rotated) == ["access", "refresh"]
    assert rotated["refresh"] != tokens["refresh"]
    second = api_client.post("/api/auth/token/refresh", {"refresh": rotated["refresh"]}, format="json")
    assert second.status_code == 200 and second.json()["refresh"] != rotated["refresh"]


def test_replaying_a_rotated_token_revokes_its_whole_family(api_client, user):
    """OAuth 2.1 reuse detection: the old token is refused, and so is every token
    rotated from it since, whoever holds them."""
    tokens = _tokens(api_client, user.username)
    rotated = api_client.post("/api/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json").json()
    newest = api_client.post("/api/auth/token/refresh", {"refresh": rotated["refresh"]}, format="json").json()
    other_login = _tokens(api_client, user.username)
    replay = api_client.post("/api/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "invalid_token"
    for revoked in (rotated["refresh"], newest["refresh"]):
        refused = api_client.post("/api/auth/token/refresh", {"refresh": revoked}, format="json")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
    assert api_client.post("/api/auth/logout", {"refresh": newest["refresh"]}, format="json").status_code == 401
    # Another login of the same user is another family: untouched.
    assert (
        api_client.post("/api/auth/token/refresh", {"refresh": other_login["refresh"]}, format="json").status_code
        == 200
    )


def test_logout_blacklists_refresh_token(api_client, user):
    tokens = _tokens(api_client, user.username)
    assert api_client.post("/api/auth/logout", {"refresh": tokens["refresh"]}, format="json").status_code == 205
    after = api_client.post("/api/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")
    assert after.status_code == 401


def test_tampered_access_token_is_rejected(api_client, user):
    tokens = _tokens(api_client, user.username)
    head, payload, signature = tokens["access"].split(".")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {head}.{payload}.{signature[::-1]}")
    response = api_client.get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_repeated_failed_logins_are_throttled(api_client, user):
    for _ in range(3):
        bad = api_client.post("/api/auth/token", {"username": user.username, "password": "x"}, format="json")
        assert bad.status_code == 401
    throttled = api_client.post("/api/auth/token", {"username": user.username, "password": PASSWORD}, format="json")
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "throttled"
    assert 0 < int(throttled["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    # Another account from the same address is not affected.
    other = UserFactory()
    assert (
        api_client.post(
            "/api/auth/token", {"username": other.username, "password": PASSWORD}, format="json"
        ).status_code
        == 200
    )


def test_me_requires_authentication(api_client):
    response = api_client.get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def _refreshed(api_client, refresh: str) -> int:
    return api_client.post("/api/auth/token/refresh", {"refresh": refresh}, format="json").status_code


def test_a_password_change_ends_every_refresh_token(api_client, user):
    sessions = [_tokens(api_client, user.username) for _ in range(2)]  # two logins, say the owner and a thief
    user.set_password("another-long-passphrase-2026")
    user.save()
    assert [_refreshed(api_client, s["refresh"]) for s in sessions] == [401, 401]
    answer = api_client.post(
        "/api/auth/token", {"username": user.username, "password": "another-long-passphrase-2026"}, format="json"
    )
    assert _refreshed(api_client, answer.json()["refresh"]) == 200


def test_a_password_set_in_the_admin_ends_every_refresh_token(api_client, client, user):
    session = _tokens(api_client, user.username)
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    new = "another-long-passphrase-2026"
    answer = client.post(
        f"/admin/auth/user/{user.pk}/password/",
        {"password1": new, "password2": new, "usable_password": "true"},
    )
    assert answer.status_code == 302, answer.content[:500]
    assert _refreshed(api_client, session["refresh"]) == 401


def test_a_password_changed_behind_the_models_back_ends_every_refresh_token(api_client, user):
    """The mark is checked against the stored hash, however it was written (a script, SQL)."""
    session = _tokens(api_client, user.username)
    type(user).objects.filter(pk=user.pk).update(password=make_password("another-long-passphrase-2026"))
    assert _refreshed(api_client, session["refresh"]) == 401


def test_a_save_that_keeps_the_password_keeps_the_refresh_tokens(api_client, user):
    session = _tokens(api_client, user.username)
    user.first_name = "Alice"
    user.save()
    assert _refreshed(api_client, session["refresh"]) == 200


def test_a_refresh_token_without_the_password_mark_is_refused(api_client, user):
    """Issued before tokens carried the mark: whether the password changed since cannot be
    told, so it is refused (the user logs in once more)."""
    token = FamilyRefreshToken.for_user_in_family(user, family=None)
    del token[CREDENTIALS_CLAIM]
    assert _refreshed(api_client, str(token)) == 401
