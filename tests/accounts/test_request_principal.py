"""accounts.authentication.request_principal keeps the access tokens it verified: a token
seen again is not verified again, but its expiry still is; a token that failed is never
kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import RequestFactory
from rest_framework_simplejwt.tokens import AccessToken

from accounts import authentication
from accounts.authentication import CredentialsInvalid, request_principal
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _request(token: object) -> object:
    return RequestFactory().post("/api/orders", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_kept_token_still_expires(monkeypatch):
    user = UserFactory()
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=60))
    request = _request(token)
    assert request_principal(request).user_id == user.pk
    verified: list[bytes] = []
    monkeypatch.setattr(authentication._jwt, "get_validated_token", verified.append)
    assert request_principal(request).user_id == user.pk  # kept: not verified again
    assert verified == []
    monkeypatch.undo()
    # Past its expiry (leeway included), for this module and for simplejwt's own check.
    later = token["exp"] + token.get_token_backend().get_leeway().total_seconds() + 1
    monkeypatch.setattr(authentication.time, "time", lambda: later)
    monkeypatch.setattr("rest_framework_simplejwt.tokens.aware_utcnow", lambda: datetime.fromtimestamp(later, tz=UTC))
    with pytest.raises(CredentialsInvalid):
        request_principal(request)


def test_a_refused_token_is_not_kept():
    user = UserFactory()
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    for _ in range(2):
        with pytest.raises(CredentialsInvalid):
            request_principal(_request(token))
    assert str(token).encode() not in authentication._verified
