"""Issued refresh tokens are kept as digests: the outstanding-token table held every live
refresh JWT, so whoever read it (a backup, a leaked dump, a read-only database role) could
rotate any of them into that user's access, a superuser's included."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.tokens import token_pair_issue, token_stored_form
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

digests_migration = importlib.import_module("accounts.migrations.0004_refresh_tokens_stored_as_digests")


def _stored() -> list[str]:
    return list(OutstandingToken.objects.order_by("pk").values_list("token", flat=True))


def test_no_issued_refresh_token_is_stored_and_each_still_works(api_client):
    user = UserFactory()
    login = api_client.post("/api/auth/token", {"username": user.username, "password": PASSWORD}, format="json").json()
    rotated = api_client.post("/api/auth/token/refresh", {"refresh": login["refresh"]}, format="json").json()
    stored = _stored()
    assert stored == [token_stored_form(login["refresh"]), token_stored_form(rotated["refresh"])]
    for jwt in (login["refresh"], rotated["refresh"]):
        assert not any(jwt.split(".")[1] in row for row in stored)  # not even its claims
    # Spending, reuse detection and logout go by jti: unchanged.
    replay = api_client.post("/api/auth/token/refresh", {"refresh": login["refresh"]}, format="json")
    assert replay.status_code == 401
    again = api_client.post("/api/auth/token", {"username": user.username, "password": PASSWORD}, format="json").json()
    assert api_client.post("/api/auth/logout", {"refresh": again["refresh"]}, format="json").status_code == 205
    assert api_client.post("/api/auth/token/refresh", {"refresh": again["refresh"]}, format="json").status_code == 401


def test_the_migration_turns_tokens_stored_before_into_digests():
    user = UserFactory()
    issued = [token_pair_issue(user=user)["refresh"] for _ in range(3)]
    # As rows written before this change held them: the JWT itself.
    for row, jwt in zip(OutstandingToken.objects.order_by("pk"), issued, strict=True):
        OutstandingToken.objects.filter(pk=row.pk).update(token=jwt)
    assert _stored() == issued
    digests_migration.tokens_to_digests(apps, None)
    assert _stored() == [token_stored_form(jwt) for jwt in issued]
    digests_migration.tokens_to_digests(apps, None)  # a digest is left as it is
    assert _stored() == [token_stored_form(jwt) for jwt in issued]
