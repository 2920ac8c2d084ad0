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
    token.set_exp(lifetime=-timedelta(minutes=1))  # past its expiry and the leeway
    for _ in range(2):
        with pytest.raises(CredentialsInvalid):
            request_principal(_request(token))
    assert str(token).encode() not in authentication._verified


@pytest.mark.parametrize("ahead", [1, 4])
def test_a_token_issued_by_a_clock_a_few_seconds_ahead_is_accepted(ahead):
    # A web host whose clock runs ahead of this one's (or this host's clock stepped back
    # since): its tokens' `iat` is in this host's future. PyJWT refuses an `iat` later than
    # now + leeway ("The token is not yet valid (iat)"): with no leeway, a user who had just
    # logged in had 401 on every other request, on whichever host was behind, until its
    # clock caught up.
    user = UserFactory()
    issued = datetime.now(UTC) + timedelta(seconds=ahead)
    token = AccessToken.for_user(user)
    token.set_iat(at_time=issued)
    token.set_exp(from_time=issued)
    assert request_principal(_request(token)).user_id == user.pk


def test_a_token_issued_well_in_the_future_is_still_refused():
    user = UserFactory()
    issued = datetime.now(UTC) + timedelta(minutes=1)
    token = AccessToken.for_user(user)
    token.set_iat(at_time=issued)
    token.set_exp(from_time=issued)
    with pytest.raises(CredentialsInvalid):
        request_principal(_request(token))
