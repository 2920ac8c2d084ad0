"""accounts.services.inactive_credentials_revoke: an inactive account's API keys are deleted
and its refresh tokens revoked. Both were refused only while the account stayed inactive: a
reactivation brought back the key or the session that had leaked."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import api_key_create, inactive_credentials_revoke
from accounts.tokens import token_pair_issue
from tests.accounts.api_key_support import signed_request
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


class Credentials:
    """A user's API key and refresh token, and whether each still works."""

    def __init__(self, user: Any) -> None:
        self.user = user
        api_key, self.secret = api_key_create(user=user, label="bot", permissions=["read"])
        self.key = api_key.key
        self.refresh = token_pair_issue(user=user)["refresh"]

    def key_works(self) -> bool:
        return signed_request(APIClient(), self.key, self.secret, "GET", "/api/me").status_code == 200

    def refresh_works(self) -> bool:
        answer = APIClient().post("/api/auth/token/refresh", {"refresh": self.refresh}, format="json")
        if answer.status_code == 200:
            self.refresh = answer.json()["refresh"]
        return answer.status_code == 200


def _active(user: Any, active: bool) -> None:
    get_user_model().objects.filter(pk=user.pk).update(is_active=active)


def test_a_reactivated_account_gets_no_credential_back():
    closed, other = Credentials(UserFactory()), Credentials(UserFactory())
    _active(closed.user, False)
    assert not closed.key_works() and not closed.refresh_works()  # refused while inactive

    assert inactive_credentials_revoke() == (1, 1)
    _active(closed.user, True)
    assert not closed.key_works() and not closed.refresh_works()
    assert not ApiKey.objects.filter(user=closed.user).exists()
    assert other.key_works() and other.refresh_works()  # an active account's are left alone
    assert inactive_credentials_revoke() == (0, 0)


def test_one_account_only_when_named():
    named, left = Credentials(UserFactory()), Credentials(UserFactory())
    _active(named.user, False)
    _active(left.user, False)
    assert inactive_credentials_revoke(user_id=named.user.pk) == (1, 1)
    _active(left.user, True)
    assert left.key_works() and left.refresh_works()
    # An active account named: nothing is revoked.
    assert inactive_credentials_revoke(user_id=left.user.pk) == (0, 0)
    assert left.key_works()


def test_every_live_refresh_token_of_the_account_is_revoked():
    user = UserFactory()
    sessions = [Credentials(user) for _ in range(3)]  # three logins, three families
    _active(user, False)
    assert inactive_credentials_revoke(user_id=user.pk) == (3, 3)
    _active(user, True)
    assert not any(session.refresh_works() for session in sessions)
