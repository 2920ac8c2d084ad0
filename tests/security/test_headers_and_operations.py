"""Headers a client may forge (X-Forwarded-For, X-Forwarded-Proto) are believed only from
TRUSTED_PROXIES; /metrics answers the scraper only (a token or an allow-listed address);
private API answers and the pages of a signed-in trader are not cacheable
(`Cache-Control: no-store`, `Vary: Authorization, Cookie`)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from core.networks import client_bucket, forwarded_client
from tests.factories import PASSWORD, UserFactory
from tests.security.conftest import SYMBOL, World, api_client, page_client

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.5"
behind_a_proxy = override_settings(
    TRUSTED_PROXIES=["10.0.0.0/24"], SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")
)


# --- proxies -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # not a proxy: its header is its own word
        (PROXY, "198.51.100.7", "198.51.100.7"),
        (PROXY, "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client wrote the left part
        (PROXY, "198.51.100.7, 10.0.0.9", "198.51.100.7"),  # two proxies of ours
        (PROXY, "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # all ours: the farthest
        (PROXY, "", PROXY),
        (PROXY, "not-an-address", PROXY),
        (PROXY, "198.51.100.7, junk", PROXY),
        ("2001:db8::1", "1.2.3.4", "2001:db8::1"),
    ],
)
def test_the_client_behind_trusted_proxies(peer: str, forwarded_for: str, client: str) -> None:
    assert forwarded_client(peer=peer, forwarded_for=forwarded_for, trusted=["10.0.0.0/24"]) == client


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),  # a /64 is one client
        ("2001:db8:1:2::", "2001:db8:1:2::"),
        ("::ffff:198.51.100.7", "198.51.100.7"),  # IPv4-mapped
        ("::1", "::"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_64(address: str, counted_as: str) -> None:
    assert client_bucket(address) == counted_as


def _next_link(world: World, **headers: Any) -> str:
    owner = world.api("owner")
    for price in ("1500.00", "1501.00"):
        order = {"market": SYMBOL, "side": "buy", "type": "limit", "price": price, "quantity": "0.01"}
        assert owner.post("/api/orders", order, format="json").status_code == 201
    link = owner.get("/api/orders?limit=1", **headers).json()["next"]
    assert link
    return str(link)


@behind_a_proxy
def test_forwarded_proto_from_a_direct_client_is_ignored(world: World) -> None:
    assert _next_link(world, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https").startswith("http://")


@behind_a_proxy
def test_forwarded_proto_from_the_proxy_is_believed(world: World) -> None:
    assert _next_link(world, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https").startswith("https://")


@behind_a_proxy
@override_settings(LOGIN_FAILURE_LIMIT=2)
def test_failed_logins_count_per_forwarded_client(db: Any) -> None:
    user = UserFactory()
    client = api_client()

    def login(password: str, forwarded_for: str) -> int:
        body = {"username": user.username, "password": password}
        response = client.post("/api/auth/token", body, format="json", REMOTE_ADDR=PROXY,
                               HTTP_X_FORWARDED_FOR=forwarded_for)  # fmt: skip
        return int(response.status_code)

    # The attacker varies the part of the header it controls: one client all the same.
    assert login("guess", "1.1.1.1, 198.51.100.7") == 401
    assert login("guess", "2.2.2.2, 198.51.100.7") == 401
    assert login(PASSWORD, "3.3.3.3, 198.51.100.7") == 429
    # The owner, behind the same proxy from elsewhere, is another client.
    assert login(PASSWORD, "203.0.113.20") == 200


# --- /metrics --------------------------------------------------------------------------------------------------


def test_metrics_from_the_allow_list_only(db: Any) -> None:
    client = page_client()
    assert client.get("/metrics").status_code == 200  # 127.0.0.1: the default allow-list
    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert b"platform_" not in refused.content
    assert client.post("/metrics").status_code == 405


@override_settings(METRICS_TOKEN="s3cret-scrape-token", METRICS_ALLOWED_NETWORKS=[])
def test_metrics_with_a_bearer_token(db: Any) -> None:
    client = page_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic czNjcmV0LXNjcmFwZS10b2tlbg==").status_code == 401
    good = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token", REMOTE_ADDR="203.0.113.9")
    assert good.status_code == 200 and b"django_http_requests" in good.content


@behind_a_proxy
def test_a_client_forwarded_by_a_local_proxy_is_not_local(db: Any) -> None:
    with override_settings(TRUSTED_PROXIES=["127.0.0.1"]):
        response = page_client().get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 403


# --- caching of API answers ------------------------------------------------------------------------------------


def _private(response: Any) -> None:
    assert "no-store" in response["Cache-Control"], response.get("Cache-Control")
    vary = {v.strip().lower() for v in response["Vary"].split(",")}
    assert {"authorization", "cookie"} <= vary, response["Vary"]


def test_private_api_answers_are_not_stored(world: World) -> None:
    owner = world.api("owner")
    for path in ("/api/me", "/api/orders", "/api/trades", "/api/wallets", f"/api/orders/{world.order.pk}"):
        _private(owner.get(path))
    _private(world.page("owner").get("/api/me"))  # the session, without a token
    _private(world.api("staff").get("/api/admin/ledger"))
    tokens = api_client().post("/api/auth/token", {"username": world.owner.username, "password": PASSWORD},
                               format="json")  # fmt: skip
    assert tokens.status_code == 200
    _private(tokens)


def test_public_api_answers_vary_on_credentials(world: World) -> None:
    response = world.api("anonymous").get("/api/markets")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")
    assert {"authorization", "cookie"} <= {v.strip().lower() for v in response["Vary"].split(",")}
    # The same public data asked with a token is private to that caller's cache.
    _private(world.api("owner").get("/api/markets"))


def test_pages_of_a_signed_in_trader_are_not_stored(world: World) -> None:
    owner = world.page("owner")
    paths = ("/", "/wallet/", "/wallet/live", "/orders/", "/fills/", "/flywheel/", f"/trade/{SYMBOL}",
             f"/trade/{SYMBOL}/live", "/keys/")  # fmt: skip
    for path in paths:
        response = owner.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response.get("Cache-Control", ""), (path, response.get("Cache-Control"))
        assert "private" in response["Cache-Control"], path
    # The same public pages to an anonymous visitor stay cacheable as before.
    for path in ("/", f"/trade/{SYMBOL}"):
        assert "no-store" not in world.page("anonymous").get(path).get("Cache-Control", ""), path


# --- 401 challenges ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "code"),
    [
        ("get", "/api/wallets", {}, None, "not_authenticated"),
        ("get", "/api/wallets", {"HTTP_AUTHORIZATION": "Bearer not-a-token"}, None, "invalid_token"),
        ("post", "/api/orders", {"HTTP_AUTHORIZATION": "Bearer not-a-token"}, {}, "invalid_token"),
        ("get", "/api/wallets", {"HTTP_X_API_KEY": "0" * 32}, None, "invalid_api_key"),
        ("get", "/api/markets", {"HTTP_X_API_KEY": "0" * 32}, None, "invalid_api_key"),
        ("post", "/api/auth/token", {}, {"username": "nobody", "password": "wrong"}, "invalid_credentials"),
        ("post", "/api/auth/token/refresh", {}, {"refresh": "a.b.c"}, "invalid_token"),
        ("post", "/api/auth/logout", {}, {"refresh": "a.b.c"}, "invalid_token"),
    ],
)
def test_every_401_carries_its_challenge(method: str, path: str, headers: dict, body: Any, code: str) -> None:
    """RFC 9110: a 401 answer carries WWW-Authenticate. A refused token, API key or login got
    it from POST /api/orders' hot path only; the other endpoints sent none."""
    client = api_client()
    response = getattr(client, method)(path, body, format="json", **headers)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == code
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
