"""A password change ends every token issued before it, access tokens included, on every
door: the DRF views, the order hot path (the engine compares the token's password mark:
tests/orders/sequencer/test_sequencer_batch_reads.py, test_order_api_fast.py) and the streams
(tests/orders/streams/test_streams_auth.py). Before, an access token lived out its 15 minutes
after the owner changed a password because it had leaked."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.credentials import CREDENTIALS_CLAIM, password_mark, password_marks_of_hash
from orders.models import Order
from tests.factories import PASSWORD, UserFactory, fund, market_create

pytestmark = pytest.mark.django_db

LIMIT = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1900.00"}


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"])


def _login(username: str, password: str = PASSWORD) -> dict[str, str]:
    response = APIClient().post("/api/auth/token", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return dict(response.json())


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_every_token_a_login_or_a_refresh_issues_carries_the_password_mark():
    user = UserFactory()
    pair = _login(user.username)
    refreshed = APIClient().post("/api/auth/token/refresh", {"refresh": pair["refresh"]}, format="json").json()
    for token in (pair["access"], pair["refresh"], refreshed["access"], refreshed["refresh"]):
        assert _claims(token)[CREDENTIALS_CLAIM] == password_mark(user)


def test_the_mark_of_a_stored_hash_is_the_users_mark():
    """The engine reads the password column only; its mark must be the one tokens carry."""
    user = UserFactory()
    assert password_marks_of_hash(user.password)[0] == password_mark(user) == user.get_session_auth_hash()[:20]
    user.set_password("another-password-2026")
    assert password_marks_of_hash(user.password)[0] == password_mark(user)


@pytest.mark.parametrize("changed_by", ["set_password", "an UPDATE of the column"])
def test_access_tokens_issued_before_a_password_change_are_refused(changed_by):
    market_create("ETH-USDT")
    user = UserFactory()
    fund(user, "USDT", "1000")
    old = _bearer(_login(user.username)["access"])
    resting = old.post("/api/orders", LIMIT, format="json")
    assert resting.status_code == 201, resting.content
    if changed_by == "set_password":
        user.set_password("another-password-2026")
        user.save()
    else:
        other = UserFactory.build()
        other.set_password("another-password-2026")
        get_user_model().objects.filter(pk=user.pk).update(password=other.password)

    for response in (
        old.get("/api/me"),
        old.get("/api/orders"),
        old.post("/api/orders", LIMIT, format="json"),
        old.delete(f"/api/orders/{resting.json()['id']}"),
    ):
        assert response.status_code == 401, (response.status_code, response.content[:200])
        assert response.json()["error"]["code"] == "invalid_token"
    assert Order.objects.filter(user=user).count() == 1
    assert Order.objects.get(pk=resting.json()["id"]).status == "open"

    fresh = _bearer(_login(user.username, "another-password-2026")["access"])
    assert fresh.get("/api/me").status_code == 200
    assert fresh.post("/api/orders", LIMIT, format="json").status_code == 201
