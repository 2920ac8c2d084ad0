"""Rate limits: the per-user order rate (POST /api/orders, scope "orders"), registration
(scope "register", per client address) and failed-login throttling (per username and
address, shared by the API and the login page). A refusal is a 429 in the contract's
envelope; for the DRF throttles with a Retry-After header.

DRF reads the rates once, at import (SimpleRateThrottle.THROTTLE_RATES): the tests patch
that class attribute rather than the settings, and patch the throttle's clock to move time."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from config.settings import base
from orders.models import Order
from tests.factories import PASSWORD, UserFactory
from tests.security.conftest import ORDER, Clock, World, api_client, page_client

pytestmark = pytest.mark.django_db


def _throttled(response: Any) -> int:
    """Checks the 429 envelope and returns Retry-After in seconds."""
    assert response.status_code == 429, (response.status_code, response.content[:200])
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "throttled"
    assert body["error"]["message"]
    retry_after = response["Retry-After"]
    assert retry_after.isdigit(), retry_after
    return int(retry_after)


def _orders(user: Any) -> int:
    return Order.objects.filter(user=user).count()


def test_the_order_rate_is_configured() -> None:
    assert "orders" in base.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]  # type: ignore[operator]
    # The throttle really reads the configured table (the patching below relies on it).
    assert SimpleRateThrottle.THROTTLE_RATES is api_settings.DEFAULT_THROTTLE_RATES
    assert ScopedRateThrottle().parse_rate(base.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["orders"])[0]  # type: ignore[index]


def test_orders_beyond_the_rate_are_429_with_retry_after(world: World, rates: Any, clock: Clock) -> None:
    rates(orders="3/min")
    owner = world.api("owner")
    placed = _orders(world.owner)
    assert owner.post("/api/orders", ORDER, format="json").status_code == 201
    assert owner.post("/api/orders", {**ORDER, "price": "oops"}, format="json").status_code == 400  # counts too
    clock.now += 10
    assert owner.post("/api/orders", ORDER, format="json").status_code == 201
    clock.now += 5
    refused = owner.post("/api/orders", ORDER, format="json")
    # The window opened 15 s ago: 45 s left, announced rounded up.
    assert _throttled(refused) == 46
    assert _orders(world.owner) == placed + 2


def test_the_order_rate_is_per_user(world: World, rates: Any, clock: Clock) -> None:
    rates(orders="2/min")
    owner = world.api("owner")
    for _ in range(2):
        assert owner.post("/api/orders", ORDER, format="json").status_code == 201
    _throttled(owner.post("/api/orders", ORDER, format="json"))
    # A fresh token or the session does not reset the user's count ...
    _throttled(api_client(world.owner).post("/api/orders", ORDER, format="json"))
    _throttled(world.page("owner").post("/api/orders", ORDER, content_type="application/json"))
    # ... and other users are not affected.
    assert world.api("other").post("/api/orders", ORDER, format="json").status_code == 201
    assert world.api("staff").post("/api/orders", ORDER, format="json").status_code == 201


def test_a_throttled_user_can_still_read_and_cancel(world: World, rates: Any, clock: Clock) -> None:
    rates(orders="1/min")
    owner = world.api("owner")
    assert owner.post("/api/orders", ORDER, format="json").status_code == 201
    _throttled(owner.post("/api/orders", ORDER, format="json"))
    assert owner.get("/api/orders").status_code == 200
    assert owner.post(f"/api/orders/{world.order.pk}/cancel").status_code == 200


def test_the_order_rate_window_passes(world: World, rates: Any, clock: Clock) -> None:
    rates(orders="1/min")
    owner = world.api("owner")
    assert owner.post("/api/orders", ORDER, format="json").status_code == 201
    clock.now += 59
    assert _throttled(owner.post("/api/orders", ORDER, format="json")) == 2
    clock.now += 2
    assert owner.post("/api/orders", ORDER, format="json").status_code == 201


# --- registration -------------------------------------------------------------------------------------


def _register(client: APIClient, name: str, **extra: Any) -> Any:
    return client.post("/api/auth/register", {"username": name, "password": PASSWORD}, format="json", **extra)


def test_registration_is_rate_limited_per_address(db: Any, rates: Any, clock: Clock) -> None:
    rates(register="2/min")
    client = api_client()
    assert _register(client, "first1").status_code == 201
    assert _register(client, "first1").status_code == 400  # taken: still counts
    assert _throttled(_register(client, "third3")) == 61
    assert not get_user_model().objects.filter(username="third3").exists()
    # Another address is not affected.
    assert _register(client, "fourth4", REMOTE_ADDR="10.1.2.3").status_code == 201


def test_a_forged_forwarded_for_header_does_not_reset_the_registration_limit(db: Any, rates: Any, clock: Clock) -> None:
    """Was a bypass: DRF's default identity is the client-sent X-Forwarded-For."""
    rates(register="2/min")
    client = api_client()
    for n in range(2):
        assert _register(client, f"spoof{n}", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code == 201
    _throttled(_register(client, "spoof9", HTTP_X_FORWARDED_FOR="203.0.113.99"))
    assert not get_user_model().objects.filter(username="spoof9").exists()


def test_one_ipv6_64_is_one_address_for_the_registration_rate(db: Any, rates: Any, clock: Clock) -> None:
    """Was a bypass: each IPv6 address had a count of its own, and one server holds a /64
    (2^64 of them): a new source address per registration escaped the rate."""
    rates(register="2/min")
    client = api_client()
    for n in range(2):
        assert _register(client, f"six{n}", REMOTE_ADDR=f"2001:db8:7:7::{n + 1:x}").status_code == 201
    _throttled(_register(client, "six9", REMOTE_ADDR="2001:db8:7:7:ffff:1:2:3"))
    assert not get_user_model().objects.filter(username="six9").exists()
    # The next /64 is another client.
    assert _register(client, "six8", REMOTE_ADDR="2001:db8:7:8::1").status_code == 201


def _register_page(client: Any, name: str, **extra: Any) -> Any:
    form = {"username": name, "email": "", "password": PASSWORD, "password_confirm": PASSWORD}
    return client.post("/register", form, **extra)


def test_the_registration_page_counts_towards_the_same_rate(db: Any, rates: Any, clock: Clock) -> None:
    """Was a bypass: the /register page created accounts without any rate, so the
    API's 30/hour per address was only a matter of using the page (reproduced on
    make run: the 31st POST /api/auth/register was 429, /register then created 5 more)."""
    rates(register="2/min")
    assert _register(api_client(), "viaapi1").status_code == 201
    assert _register_page(page_client(), "viapage1").status_code == 302  # created, logged in
    refused = _register_page(page_client(), "viapage2")
    assert refused.status_code == 429 and refused["Retry-After"] == "61"
    assert "throttled" in refused.content.decode()
    _throttled(_register(api_client(), "viaapi2"))  # the page's requests counted for the API too
    assert not get_user_model().objects.filter(username__in=["viapage2", "viaapi2"]).exists()
    # Another address is not affected.
    assert _register_page(page_client(), "viapage3", REMOTE_ADDR="10.1.2.3").status_code == 302


# --- failed logins ------------------------------------------------------------------------------------


def _login(client: APIClient, username: str, password: str, **extra: Any) -> Any:
    return client.post("/api/auth/token", {"username": username, "password": password}, format="json", **extra)


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_username_spellings_share_one_failure_count(db: Any) -> None:
    UserFactory(username="alice")
    client = api_client()
    for spelling in ("alice", "ALICE", " Alice "):
        assert _login(client, spelling, "wrong").status_code == 401
    response = _login(client, "alice", PASSWORD)
    assert response.status_code == 429 and response.json()["error"]["code"] == "throttled"


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_forged_forwarded_for_headers_do_not_reset_failed_logins(user: Any) -> None:
    client = api_client()
    for n in range(3):
        assert _login(client, user.username, "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code == 401
    response = _login(client, user.username, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.77")
    assert response.status_code == 429
    # The count is per address: the owner of the account, elsewhere, is not locked out.
    assert _login(client, user.username, PASSWORD, REMOTE_ADDR="10.9.8.7").status_code == 200


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_the_api_and_the_login_page_share_the_failure_count(user: Any) -> None:
    client = api_client()
    for _ in range(3):
        assert _login(client, user.username, "wrong").status_code == 401
    page = page_client()
    response = page.post("/login", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "throttled" in response.content.decode()
    assert "_auth_user_id" not in page.session


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_a_successful_login_clears_the_failure_count(user: Any) -> None:
    client = api_client()
    for _ in range(2):
        assert _login(client, user.username, "wrong").status_code == 401
    assert _login(client, user.username, PASSWORD).status_code == 200
    for _ in range(2):
        assert _login(client, user.username, "wrong").status_code == 401
    assert _login(client, user.username, PASSWORD).status_code == 200


def test_the_shipped_failure_limit_is_what_throttles(user: Any) -> None:
    """No override: the settings as shipped lock a username out after LOGIN_FAILURE_LIMIT
    failures (a small number), for at most LOGIN_FAILURE_WINDOW_SECONDS (at least a minute)."""
    assert 1 <= settings.LOGIN_FAILURE_LIMIT <= 20 and settings.LOGIN_FAILURE_WINDOW_SECONDS >= 60
    client = api_client()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        assert _login(client, user.username, "wrong").status_code == 401
    response = _login(client, user.username, PASSWORD)
    assert response.status_code == 429 and response.json()["error"]["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
