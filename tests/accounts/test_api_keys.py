"""API keys: management (POST/GET/DELETE /api/keys) and signed requests, every error of
the contract (shared/spec/api.md, "API keys and signed requests")."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.cache import caches
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.api_keys import api_key_request_principal, secret_decrypt
from accounts.models import ApiKey, ApiSignatureSeen
from accounts.tokens import token_pair_issue
from core.api.request import request_user  # noqa: F401  (the module the views use)
from tests.accounts.api_key_support import now_ms, sign, signed_headers, signed_request
from tests.conftest import jwt_client
from tests.environment import require
from tests.factories import StaffFactory, UserFactory, fund, market_create

pytestmark = pytest.mark.django_db


def _create(client: APIClient, permissions: list[str], label: str = "bot") -> dict:
    response = client.post("/api/keys", {"label": label, "permissions": permissions}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def read_key(user_client) -> dict:
    return _create(user_client, ["read"], "reader")


@pytest.fixture
def trade_key(user_client) -> dict:
    return _create(user_client, ["read", "trade"], "trader")


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


# --- Management ---------------------------------------------------------------------------


def test_create_answers_the_secret_once_and_lists_without_it(user_client, user):
    created = _create(user_client, ["read", "trade"])
    assert set(created) == {"id", "key", "secret", "label", "permissions", "created_at"}
    assert created["permissions"] == ["read", "trade"]
    assert re.fullmatch(r"[0-9a-f]{32}", created["key"]) and re.fullmatch(r"[0-9a-f]{64}", created["secret"])
    listed = user_client.get("/api/keys").json()
    assert listed == [
        {
            "id": created["id"],
            "key": created["key"],
            "label": "bot",
            "permissions": ["read", "trade"],
            "created_at": created["created_at"],
            "last_used_at": None,
        }
    ]
    assert created["secret"] not in user_client.get("/api/keys").content.decode()
    stored = ApiKey.objects.get(pk=created["id"])
    assert created["secret"] not in stored.secret_encrypted
    assert secret_decrypt(stored.secret_encrypted) == created["secret"]


def test_create_with_the_session(user):
    # The contract: keys are managed with a JWT or a session.
    client = APIClient(enforce_csrf_checks=False)
    client.force_login(user)
    assert client.post("/api/keys", {"label": "s", "permissions": ["read"]}, format="json").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"label": "x", "permissions": ["trade"]},
        {"label": "x", "permissions": ["read", "read"]},
        {"label": "x", "permissions": []},
        {"label": "x", "permissions": ["admin"]},
        {"label": "", "permissions": ["read"]},
        {"label": "a\u202eb", "permissions": ["read"]},
        {"permissions": ["read"]},
    ],
)
def test_create_refuses_bad_input(user_client, body):
    _error(user_client.post("/api/keys", body, format="json"), 400, "validation_error")


def test_keys_are_per_user_and_limited(user_client, other_client, user):
    mine = _create(user_client, ["read"])
    assert other_client.get("/api/keys").json() == []
    _error(other_client.delete(f"/api/keys/{mine['id']}"), 404, "api_key_not_found")
    _error(user_client.delete("/api/keys/abc"), 404, "api_key_not_found")
    with override_settings(API_KEYS_PER_USER_MAX=2):
        _create(user_client, ["read"])
        _error(
            user_client.post("/api/keys", {"label": "x", "permissions": ["read"]}, format="json"),
            400,
            "too_many_api_keys",
        )


def test_management_needs_a_login(api_client):
    _error(api_client.get("/api/keys"), 401, "not_authenticated")
    _error(
        api_client.post("/api/keys", {"label": "x", "permissions": ["read"]}, format="json"), 401, "not_authenticated"
    )


# --- Signed requests: success -------------------------------------------------------------


def test_a_signed_request_acts_for_the_owner_and_marks_last_used(api_client, user, read_key):
    response = signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == user.pk
    assert ApiKey.objects.get(pk=read_key["id"]).last_used_at is not None


def test_the_query_string_is_signed(api_client, read_key):
    path = "/api/orders?status=open&limit=5"
    assert signed_request(api_client, read_key["key"], read_key["secret"], "GET", path).status_code == 200
    headers = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/orders?status=open&limit=5")
    _error(api_client.get("/api/orders?status=open&limit=6", **headers), 401, "invalid_signature")


def test_the_raw_request_target_is_what_is_signed(api_client, read_key):
    """gunicorn passes the request line's target on (RAW_URI): a client signs what it sent,
    %2F and all, even where Django's rebuilt path would differ."""
    raw = "/api/orders/by-client-id/a%2Fb"
    headers = signed_headers(read_key["key"], read_key["secret"], "GET", raw)
    response = api_client.get(raw, RAW_URI=raw, **headers)
    _error(response, 404, "order_not_found")  # authenticated: the lookup ran


def test_the_function_takes_plain_headers(user, trade_key):
    """What a plain Django view calls: (method, path_with_query, body, headers)."""
    body = b'{"market": "ETH-USDT"}'
    stamp = str(now_ms())
    headers = {
        "x-api-key": trade_key["key"],
        "x-api-timestamp": stamp,
        "x-api-signature": sign(trade_key["secret"], stamp, "POST", "/api/orders", body),
    }
    principal = api_key_request_principal(method="POST", path_with_query="/api/orders", body=body, headers=headers)
    assert principal is not None
    assert principal.user_id == user.pk and principal.can_trade and principal.permissions == {"read", "trade"}
    assert api_key_request_principal(method="GET", path_with_query="/api/me", body=b"", headers={}) is None


# --- Signed requests: every error -----------------------------------------------------------


def test_unknown_and_malformed_keys_are_invalid_api_key(api_client, read_key):
    for key in ["0" * 32, "", "k\x00", "ключ", "x" * 65]:
        headers = signed_headers(key, read_key["secret"], "GET", "/api/me")
        _error(api_client.get("/api/me", **headers), 401, "invalid_api_key")


def test_a_deleted_key_stops_working_at_once(api_client, user_client, read_key):
    assert signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me").status_code == 200
    assert user_client.delete(f"/api/keys/{read_key['id']}").status_code == 204
    _error(signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me"), 401, "invalid_api_key")


def test_an_inactive_owner_s_key_is_invalid(api_client, user, read_key):
    user.is_active = False
    user.save()
    _error(signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me"), 401, "invalid_api_key")


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "uppercase", "missing_signature", "missing_timestamp", "bad_timestamp", "other_method", "body"],
)
def test_bad_signatures_are_invalid_signature(api_client, trade_key, tamper):
    key, secret = trade_key["key"], trade_key["secret"]
    body = b'{"market": "NOPE-USDT"}'
    headers = signed_headers(key, secret, "POST", "/api/orders", body)
    if tamper == "wrong_secret":
        headers = signed_headers(key, "f" * 64, "POST", "/api/orders", body)
    elif tamper == "uppercase":
        headers["HTTP_X_API_SIGNATURE"] = headers["HTTP_X_API_SIGNATURE"].upper()
    elif tamper == "missing_signature":
        del headers["HTTP_X_API_SIGNATURE"]
    elif tamper == "missing_timestamp":
        del headers["HTTP_X_API_TIMESTAMP"]
    elif tamper == "bad_timestamp":
        stamp = "1.7e12"
        headers["HTTP_X_API_TIMESTAMP"] = stamp
        headers["HTTP_X_API_SIGNATURE"] = sign(secret, stamp, "POST", "/api/orders", body)
    elif tamper == "other_method":
        headers = signed_headers(key, secret, "GET", "/api/orders", body)
    elif tamper == "body":
        body = b'{"market": "ETH-USDT"}'
    response = api_client.post("/api/orders", data=body, content_type="application/json", **headers)
    _error(response, 401, "invalid_signature")


# Ahead of the clock, the skew the server sees shrinks by the time the request takes to
# reach it: a second and a half of margin for a loaded test machine (5500 failed once).
@pytest.mark.parametrize("skew_ms", [-60_000, -6000, -5200, 6500, 60_000])
def test_clock_skew_beyond_five_seconds_either_way_is_signature_expired(api_client, read_key, skew_ms):
    response = signed_request(
        api_client, read_key["key"], read_key["secret"], "GET", "/api/me", timestamp=now_ms() + skew_ms
    )
    _error(response, 401, "signature_expired")


@pytest.mark.parametrize("skew_ms", [-4000, 4000])
def test_clock_skew_within_the_window_is_accepted(api_client, read_key, skew_ms):
    response = signed_request(
        api_client, read_key["key"], read_key["secret"], "GET", "/api/me", timestamp=now_ms() + skew_ms
    )
    assert response.status_code == 200, response.content


def test_the_same_signature_twice_is_replayed_request(api_client, read_key):
    headers = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me")
    assert api_client.get("/api/me", **headers).status_code == 200
    _error(api_client.get("/api/me", **headers), 401, "replayed_request")
    # A refused request does not use up a signature: a fresh one still works.
    assert signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me").status_code == 200


def test_a_refused_request_does_not_use_up_its_signature(api_client, read_key):
    headers = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me")
    tampered = {**headers, "HTTP_X_API_SIGNATURE": "0" * 64}
    _error(api_client.get("/api/me", **tampered), 401, "invalid_signature")
    assert api_client.get("/api/me", **headers).status_code == 200


def test_the_embedded_default_claims_signatures_in_the_database(api_client, read_key):
    """The test settings' cache is per process (LocMem), like the embedded default: the
    claim goes to the database, which every process shares."""
    headers = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me")
    assert api_client.get("/api/me", **headers).status_code == 200
    assert ApiSignatureSeen.objects.filter(signature=f"{read_key['id']}:{headers['HTTP_X_API_SIGNATURE']}").exists()


def test_with_redis_signatures_are_claimed_in_the_cache(api_client, read_key):
    url = os.environ.get("REDIS_URL", "")
    require(url.startswith("redis://"), "needs Redis: set REDIS_URL=redis://...")
    # Keys of this test's own, not a flush: FLUSHDB emptied the Redis database that other test
    # workers' platforms were using meanwhile (their broker's queued tasks with it).
    redis_cache = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    with override_settings(CACHES=redis_cache):
        headers = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me")
        assert api_client.get("/api/me", **headers).status_code == 200
        _error(api_client.get("/api/me", **headers), 401, "replayed_request")
        assert not ApiSignatureSeen.objects.exists()
        assert caches["default"].get(f"api-signature:{read_key['id']}:{headers['HTTP_X_API_SIGNATURE']}") == 1


def test_a_cache_outage_falls_back_to_the_database_and_still_refuses_replays(api_client, read_key):
    dead = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=dead):
        headers = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me")
        assert api_client.get("/api/me", **headers).status_code == 200
        _error(api_client.get("/api/me", **headers), 401, "replayed_request")


def test_expired_claims_are_removed(api_client, read_key):
    ApiSignatureSeen.objects.create(signature="old", expires_at=timezone.now() - timedelta(seconds=1))
    assert signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me").status_code == 200
    assert not ApiSignatureSeen.objects.filter(signature="old").exists()


def test_a_changed_secret_key_invalidates_keys_unless_kept_as_fallback(api_client, settings, read_key):
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    _error(signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me"), 401, "invalid_signature")
    settings.SECRET_KEY_FALLBACKS = [old]
    assert signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me").status_code == 200


def test_a_dedicated_encryption_key_is_used_when_set(user_client, settings):
    settings.API_KEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    created = _create(user_client, ["read"])
    stored = ApiKey.objects.get(pk=created["id"]).secret_encrypted
    assert Fernet(settings.API_KEY_ENCRYPTION_KEYS[0].encode()).decrypt(stored.encode()).decode() == created["secret"]


# --- What a key may do ---------------------------------------------------------------------


@pytest.fixture
def market(db):
    return market_create("ETH-USDT")


ORDER = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}


def test_a_read_only_key_is_refused_on_trading(api_client, user, user_client, read_key, market):
    fund(user, "USDT", "1000")
    order = user_client.post("/api/orders", ORDER, format="json").json()
    key, secret = read_key["key"], read_key["secret"]
    _error(signed_request(api_client, key, secret, "POST", "/api/orders", ORDER), 403, "api_key_read_only")
    _error(
        signed_request(api_client, key, secret, "POST", f"/api/orders/{order['id']}/cancel"), 403, "api_key_read_only"
    )
    _error(signed_request(api_client, key, secret, "DELETE", f"/api/orders/{order['id']}"), 403, "api_key_read_only")
    # Reading works.
    listed = signed_request(api_client, key, secret, "GET", "/api/orders")
    assert listed.status_code == 200 and [o["id"] for o in listed.json()["results"]] == [order["id"]]


def test_a_trade_key_places_and_cancels(api_client, user, trade_key, market):
    fund(user, "USDT", "1000")
    key, secret = trade_key["key"], trade_key["secret"]
    placed = signed_request(api_client, key, secret, "POST", "/api/orders", ORDER)
    assert placed.status_code == 201, placed.content
    order_id = placed.json()["id"]
    cancelled = signed_request(api_client, key, secret, "POST", f"/api/orders/{order_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"market": "ETH-USDT", "side": "buy"', "application/json", 400, "malformed_request"),
        (b"", "application/json", 400, "validation_error"),
        (json.dumps(ORDER).encode(), "text/plain", 415, "unsupported_media_type"),
        (json.dumps(ORDER).encode(), "application/json; charset=latin-1", 201, None),
    ],
)
def test_a_signed_placement_the_order_path_leaves_to_drf_is_answered_as_with_a_token(
    api_client, user, trade_key, market, body, content_type, status, code
):
    """A body the order hot path does not take (not JSON, empty, another charset) goes on to
    the DRF view, which authenticated the key a second time: its signature, claimed by the
    first check, was a 401 replayed_request instead of the answer a token gets."""
    fund(user, "USDT", "1000")
    key, secret = trade_key["key"], trade_key["secret"]
    headers = signed_headers(key, secret, "POST", "/api/orders", body)
    answer = api_client.post("/api/orders", data=body, content_type=content_type, **headers)
    assert answer.status_code == status, answer.content
    if code is not None:
        assert answer.json()["error"]["code"] == code


def test_keys_cannot_manage_keys(api_client, trade_key):
    key, secret = trade_key["key"], trade_key["secret"]
    _error(signed_request(api_client, key, secret, "GET", "/api/keys"), 403, "api_key_not_allowed")
    body = {"label": "x", "permissions": ["read"]}
    _error(signed_request(api_client, key, secret, "POST", "/api/keys", body), 403, "api_key_not_allowed")
    _error(
        signed_request(api_client, key, secret, "DELETE", f"/api/keys/{trade_key['id']}"), 403, "api_key_not_allowed"
    )
    assert ApiKey.objects.filter(pk=trade_key["id"]).exists()


def test_keys_are_refused_on_staff_endpoints(api_client):
    staff = StaffFactory()
    created = _create(jwt_client(staff), ["read", "trade"])
    key, secret = created["key"], created["secret"]
    for path in ["/api/admin/ledger", "/api/admin/revenue/onchain-worker-status"]:
        _error(signed_request(api_client, key, secret, "GET", path), 403, "api_key_not_allowed")
    credit = {"username": staff.username, "asset": "USDT", "amount": "1"}
    _error(
        signed_request(api_client, key, secret, "POST", "/api/admin/wallets/credit", credit), 403, "api_key_not_allowed"
    )
    assert jwt_client(staff).get("/api/admin/ledger").status_code == 200


# --- Secrets never in logs -----------------------------------------------------------------


def test_the_secret_is_never_logged(api_client, user_client, caplog):
    caplog.set_level(logging.DEBUG)
    created = _create(user_client, ["read", "trade"])
    key, secret = created["key"], created["secret"]
    signed_request(api_client, key, secret, "GET", "/api/me")
    signed_request(api_client, key, "0" * 64, "GET", "/api/me")
    signed_request(api_client, key, secret, "GET", "/api/me", timestamp=now_ms() - 60_000)
    user_client.get("/api/keys")
    assert any("api key created" in r.getMessage() for r in caplog.records)  # the capture works
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.__dict__)


def test_a_second_user_cannot_use_the_first_user_s_signature_with_own_key(api_client, read_key):
    other = _create(jwt_client(UserFactory()), ["read"])
    headers = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me")
    headers["HTTP_X_API_KEY"] = other["key"]
    _error(api_client.get("/api/me", **headers), 401, "invalid_signature")


@pytest.mark.parametrize(("signed", "received"), [("/api/me?", "/api/me"), ("/api/me", "/api/me?")])
def test_an_empty_query_is_signed_with_or_without_its_question_mark(api_client, read_key, signed, received):
    """curl sends `/api/me?` and uvicorn hands the application `/api/me`; a client signing
    what it sent was refused with invalid_signature."""
    headers = signed_headers(read_key["key"], read_key["secret"], "GET", signed)
    assert api_client.get("/api/me", RAW_URI=received, **headers).status_code == 200
    other = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me?x=")
    _error(api_client.get("/api/me", RAW_URI=received, **other), 401, "invalid_signature")


def test_a_request_with_a_token_and_a_key_is_the_keys_on_every_endpoint(api_client, user, read_key, market):
    """With both, GET /api/me answered for the token and POST /api/orders for the key: the
    key decides everywhere (a read-only key stays read-only, a bad one is refused)."""
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user)['access']}")
    body = json.dumps(ORDER).encode()
    bad = signed_headers("0" * 32, read_key["secret"], "GET", "/api/me")
    _error(api_client.get("/api/me", **bad), 401, "invalid_api_key")
    bad = signed_headers("0" * 32, read_key["secret"], "POST", "/api/orders", body)
    _error(api_client.post("/api/orders", body, content_type="application/json", **bad), 401, "invalid_api_key")
    read_only = signed_headers(read_key["key"], read_key["secret"], "POST", "/api/orders", body)
    response = api_client.post("/api/orders", body, content_type="application/json", **read_only)
    assert response.status_code == 403, response.content
    assert signed_request(api_client, read_key["key"], read_key["secret"], "GET", "/api/me").json()["id"] == user.pk


@override_settings(API_REPLAY_STORE="database")
def test_a_web_host_whose_clock_runs_ahead_does_not_free_signatures_still_in_their_window(
    api_client, read_key, monkeypatch
):
    """Web hosts share the claims table. A host whose clock ran a minute ahead deleted, as
    "expired" by its clock, the claims another host had made seconds before: their requests,
    still within their window on that other host, were accepted again (a replay). The
    claims' expiry is the database's clock's, for every host."""
    headers = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me")
    assert api_client.get("/api/me", **headers).status_code == 200  # on a host with the right time
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(minutes=1))
    # The host a minute ahead claims a signature of its own (its request signed by its clock).
    ahead = signed_headers(read_key["key"], read_key["secret"], "GET", "/api/me", timestamp=now_ms() + 60_000)
    real_ns = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + 60 * 10**9)
    assert api_client.get("/api/me", **ahead).status_code == 200
    monkeypatch.undo()
    _error(api_client.get("/api/me", **headers), 401, "replayed_request")


@override_settings(API_REPLAY_STORE="database")
def test_a_database_claim_expires_by_the_database_s_clock(api_client, read_key):
    from accounts.api_keys import signature_claim

    gone = ApiSignatureSeen.objects.create(signature="1:gone", expires_at=timezone.now() - timedelta(seconds=1))
    kept = ApiSignatureSeen.objects.create(signature="1:kept", expires_at=timezone.now() + timedelta(seconds=30))
    assert signature_claim(key_id=read_key["id"], signature="fresh")
    claims = dict(ApiSignatureSeen.objects.values_list("signature", "expires_at"))
    assert gone.pk not in claims and kept.pk in claims
    # Twice the window and 2 s from now (the database's clock, here the same as this one's).
    ttl = timedelta(seconds=2 * 5 + 2)
    assert abs(claims[f"{read_key['id']}:fresh"] - (timezone.now() + ttl)) < timedelta(seconds=2)


@pytest.mark.parametrize("skew_ms", [-12_000, 12_000])
def test_signature_expired_says_how_far_off_the_client_is_and_the_configured_window(api_client, read_key, skew_ms):
    # The message said "more than 5 seconds" whatever API_SIGNATURE_WINDOW_MS was set to,
    # and not which way the client's clock was off.
    with override_settings(API_SIGNATURE_WINDOW_MS=10_000):
        response = signed_request(
            api_client, read_key["key"], read_key["secret"], "GET", "/api/me", timestamp=now_ms() + skew_ms
        )
    _error(response, 401, "signature_expired")
    message = response.json()["error"]["message"]
    assert "10 s" in message and "GET /api/time" in message, message
    assert ("ahead of" if skew_ms > 0 else "behind") in message, message
    assert re.search(r"\b1[12]\.\d s\b", message), message  # how far off, as the server saw it
