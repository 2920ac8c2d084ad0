"""Forged, altered, expired and revoked JWTs. tests/accounts/test_auth_api.py already covers
a reversed signature, refresh rotation and logout; these go further: every forged token
answers 401 `invalid_token` in the contract's envelope, never 200 and never a 5xx."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.tokens import FamilyRefreshToken
from tests.factories import PASSWORD
from tests.security.conftest import api_client, new_user

pytestmark = pytest.mark.django_db


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _unb64(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _claims(user: Any) -> dict[str, Any]:
    """The claims of a genuine access token of `user`."""
    return dict(AccessToken.for_user(user).payload)


def _sign(claims: dict[str, Any], *, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or settings.SIMPLE_JWT["SIGNING_KEY"], algorithm=algorithm)


def _me(token: str) -> Any:
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/me")


def _rejected(response: Any, code: str = "invalid_token") -> None:
    assert response.status_code == 401, (response.status_code, response.content[:300])
    assert response.json()["error"]["code"] == code
    assert set(response.json()) == {"error"}


def test_the_token_builder_makes_tokens_the_api_accepts(user: Any) -> None:
    """The control for every forgery below: the same helpers, nothing altered, give a 200."""
    assert _me(_sign(_claims(user))).json()["id"] == user.pk
    assert _me(str(AccessToken.for_user(user))).status_code == 200


def test_payload_switched_to_another_user_is_rejected(user: Any, other_user: Any) -> None:
    head, payload, signature = str(AccessToken.for_user(user)).split(".")
    claims = _unb64(payload)
    claims["user_id"] = str(other_user.pk)
    response = _me(f"{head}.{_b64(claims)}.{signature}")
    _rejected(response)
    assert other_user.username not in response.content.decode()


def test_staff_flag_cannot_be_added_to_the_payload(user: Any) -> None:
    head, payload, signature = str(AccessToken.for_user(user)).split(".")
    claims = {**_unb64(payload), "is_staff": True, "is_superuser": True}
    _rejected(_me(f"{head}.{_b64(claims)}.{signature}"))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_unsigned_alg_none_tokens_are_rejected(user: Any, alg: str) -> None:
    claims = _claims(user)
    for signature in ("", "x"):
        _rejected(_me(f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(claims)}.{signature}"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the test key is short for HS512
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_only_the_configured_algorithm_is_accepted(user: Any, algorithm: str) -> None:
    # Signed with the right key but another algorithm: the server pins HS256.
    _rejected(_me(_sign(_claims(user), algorithm=algorithm)))


def test_token_signed_with_another_key_is_rejected(user: Any) -> None:
    _rejected(_me(_sign(_claims(user), key="not-the-server-key-" + "x" * 40)))


def test_expired_access_token_is_rejected(user: Any) -> None:
    now = int(timezone.now().timestamp())
    # Past the leeway granted to clocks a few seconds apart (SIMPLE_JWT["LEEWAY"], 5 s).
    leeway = int(settings.SIMPLE_JWT["LEEWAY"].total_seconds())
    for expired_at in (now - leeway - 1, now - 3600, now - 30 * 86400):
        _rejected(_me(_sign({**_claims(user), "iat": expired_at - 900, "exp": expired_at})))
    assert _me(_sign({**_claims(user), "exp": now + 60})).status_code == 200


def test_token_not_yet_issued_or_without_expiry_is_rejected(user: Any) -> None:
    claims = _claims(user)
    del claims["exp"]
    _rejected(_me(_sign(claims)))


def test_refresh_token_is_not_an_access_token(user: Any) -> None:
    _rejected(_me(str(RefreshToken.for_user(user))))


def test_access_token_cannot_be_used_to_refresh(api_client: APIClient, user: Any) -> None:
    access = str(AccessToken.for_user(user))
    _rejected(api_client.post("/api/auth/token/refresh", {"refresh": access}, format="json"))
    _rejected(api_client.post("/api/auth/logout", {"refresh": access}, format="json"))


def test_expired_refresh_token_is_rejected(api_client: APIClient, user: Any) -> None:
    refresh = FamilyRefreshToken.for_user_in_family(user, family=None)
    refresh.set_exp(from_time=timezone.now() - timedelta(days=30))
    _rejected(api_client.post("/api/auth/token/refresh", {"refresh": str(refresh)}, format="json"))


def test_forged_refresh_token_is_rejected(api_client: APIClient, user: Any) -> None:
    claims = dict(FamilyRefreshToken.for_user_in_family(user, family=None).payload)
    forged = _sign(claims, key="not-the-server-key-" + "x" * 40)
    _rejected(api_client.post("/api/auth/token/refresh", {"refresh": forged}, format="json"))


def _pair(client: APIClient, username: str) -> dict[str, str]:
    response = client.post("/api/auth/token", {"username": username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()


def test_a_rotated_refresh_token_is_dead_for_refresh_and_logout(api_client: APIClient, user: Any) -> None:
    first = _pair(api_client, user.username)
    second = api_client.post("/api/auth/token/refresh", {"refresh": first["refresh"]}, format="json").json()
    third = api_client.post("/api/auth/token/refresh", {"refresh": second["refresh"]}, format="json").json()
    for dead in (first["refresh"], second["refresh"]):
        _rejected(api_client.post("/api/auth/token/refresh", {"refresh": dead}, format="json"))
        _rejected(api_client.post("/api/auth/logout", {"refresh": dead}, format="json"))
    assert _me(third["access"]).json()["id"] == user.pk


def test_logout_twice_and_refresh_after_logout_are_rejected(api_client: APIClient, user: Any) -> None:
    pair = _pair(api_client, user.username)
    assert api_client.post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json").status_code == 205
    _rejected(api_client.post("/api/auth/logout", {"refresh": pair["refresh"]}, format="json"))
    _rejected(api_client.post("/api/auth/token/refresh", {"refresh": pair["refresh"]}, format="json"))
    # Logging out one session leaves the user's other sessions alone.
    other_session = _pair(api_client, user.username)
    assert (
        api_client.post("/api/auth/token/refresh", {"refresh": other_session["refresh"]}, format="json").status_code
        == 200
    )


def test_tokens_of_a_deleted_user_are_rejected(api_client: APIClient) -> None:
    """The refresh half was a 500 (User.DoesNotExist out of simplejwt's serializer)."""
    doomed = new_user()
    access = str(AccessToken.for_user(doomed))
    refresh = str(FamilyRefreshToken.for_user_in_family(doomed, family=None))
    doomed.delete()
    _rejected(_me(access))
    _rejected(api_client.post("/api/auth/token/refresh", {"refresh": refresh}, format="json"))


def test_tokens_of_a_deactivated_user_are_rejected(api_client: APIClient) -> None:
    sleeper = new_user()
    access, refresh = (
        str(AccessToken.for_user(sleeper)),
        str(FamilyRefreshToken.for_user_in_family(sleeper, family=None)),
    )
    sleeper.is_active = False
    sleeper.save(update_fields=["is_active"])
    _rejected(_me(access))
    _rejected(api_client.post("/api/auth/token/refresh", {"refresh": refresh}, format="json"))
    _rejected(
        api_client.post("/api/auth/token", {"username": sleeper.username, "password": PASSWORD}, format="json"),
        code="invalid_credentials",
    )


def test_tokens_naming_no_user_are_rejected(user: Any) -> None:
    claims = _claims(user)
    _rejected(_me(_sign({**claims, "user_id": "999999999"})))
    _rejected(_me(_sign({key: value for key, value in claims.items() if key != "user_id"})))


@pytest.mark.parametrize("user_id", ["abc", "1 OR 1=1", [1], {"id": 1}, None, 1.5, ""])
def test_validly_signed_tokens_with_a_malformed_user_claim_are_401_not_500(user: Any, user_id: Any) -> None:
    _rejected(_me(_sign({**_claims(user), "user_id": user_id})))


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "bearer",
        "Bearer ",
        "Bearer a.b",
        "Bearer a.b.c",
        "Bearer ....",
        "Bearer " + "A" * 10_000,
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.%%%",
        "Bearer one two",
        "Bearer \u00e9\u00e8.\u00e0.\u00fc",
    ],
)
def test_malformed_bearer_headers_are_401_not_500(header: str) -> None:
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/me")
    assert response.status_code == 401, (header[:40], response.status_code)
    assert response.json()["error"]["code"] in {"invalid_token", "not_authenticated"}


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "JWT abc.def.ghi", "Bearers abc.def.ghi"])
def test_other_schemes_do_not_authenticate(header: str) -> None:
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=header)
    _rejected(client.get("/api/me"), code="not_authenticated")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_read_whatever_its_case(user: Any, scheme: str) -> None:
    """RFC 9110 (11.1): a scheme's name is case-insensitive; `bearer` was 401 not_authenticated,
    on the DRF views and on the order hot path alike."""
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {AccessToken.for_user(user)}")
    assert client.get("/api/me").json()["id"] == user.pk
    listed = client.get("/api/orders")  # the hot path's door (accounts.authentication.request_principal)
    assert listed.status_code == 200, listed.content
    placed = client.post("/api/orders", {"market": "NOPE-USDT"}, format="json")
    assert placed.status_code == 400, placed.content  # authenticated: the body's turn


@pytest.mark.parametrize("body", [{"refresh": ""}, {"refresh": "x" * 3000}, {"refresh": ["a"]}, {}, {"refresh": None}])
def test_garbage_refresh_bodies_are_4xx(api_client: APIClient, body: dict[str, Any]) -> None:
    for path in ("/api/auth/token/refresh", "/api/auth/logout"):
        response = api_client.post(path, body, format="json")
        assert response.status_code in (400, 401), (path, body, response.status_code)
        assert response.json()["error"]["code"] in {"validation_error", "invalid_token"}
