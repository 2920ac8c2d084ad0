"""Rate-limit headers (draft-ietf-httpapi-ratelimit-headers): every answer to a request a
rate counted carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`, from
the count that decided it, the 429 too (with its Retry-After, naming the same moment).

- the order rate (POST /api/orders) and the cancel rate (cancel, cancel-all): per user,
  whatever the credentials (a bearer token, a signed API key, the session), a sliding
  window counted in the web process (core.api.throttling.worker_rate_count);
- registration (POST /api/auth/register): per client address, a fixed window counted in
  the shared cache (ResilientScopedRateThrottle).

Answers refused before anything was counted (no credentials, a read-only key) and
operations without a rate carry none. The clock and the rates are patched as in
test_throttling.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import caches
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts.services import api_key_create
from core.api.throttling import RateLimitHeaders, operation_throttled
from tests.accounts.api_key_support import signed_request
from tests.factories import PASSWORD
from tests.security.conftest import ORDER, Clock, World, api_client, page_client

pytestmark = pytest.mark.django_db

HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def budget(response: Any) -> tuple[int, int, int]:
    """(limit, remaining, reset) as the answer states them: three integers."""
    values = tuple(response.get(name) for name in HEADERS)
    assert all(value is not None and value.isdigit() for value in values), (response.status_code, values)
    limit, remaining, reset = (int(value) for value in values)  # type: ignore[union-attr]
    return limit, remaining, reset


def no_budget(response: Any) -> bool:
    return not any(response.has_header(name) for name in HEADERS)


def refused(response: Any) -> tuple[int, int, int]:
    """A 429 in the envelope: its budget, whose reset is its Retry-After."""
    assert response.status_code == 429, (response.status_code, response.content[:200])
    assert response.json()["error"]["code"] == "throttled"
    limit, remaining, reset = budget(response)
    assert remaining == 0 and reset == int(response["Retry-After"])
    return limit, remaining, reset


def _place(client: Any, **changes: str) -> Any:
    return client.post("/api/orders", {**ORDER, **changes}, format="json")


# --- the order rate -------------------------------------------------------------------------------------


def test_the_order_budget_counts_down_then_429_then_comes_back(world: World, rates: Any, clock: Clock) -> None:
    rates(orders="3/min")
    owner = world.api("owner")
    first = _place(owner)
    assert first.status_code == 201 and budget(first) == (3, 2, 60)
    clock.now += 10
    invalid = _place(owner, price="oops")  # counted, as the rate counts it
    assert invalid.status_code == 400 and budget(invalid) == (3, 1, 50)  # the first leaves the window in 50 s
    clock.now += 5
    third = _place(owner)
    assert third.status_code == 201 and budget(third) == (3, 0, 45)
    clock.now += 0.5
    assert refused(_place(owner)) == (3, 0, 45)  # Retry-After 45: 44.5 s left, as announced before
    clock.now += 44.5  # the first request has left the window: one more allowed
    again = _place(owner)
    assert again.status_code == 201 and budget(again) == (3, 0, 10)  # the second (at 10 s) leaves in 10 s
    clock.now += 61  # the whole window has passed: the full budget again
    assert budget(_place(owner)) == (3, 2, 60)


def test_the_order_budget_is_per_user_whatever_the_credentials(world: World, rates: Any, clock: Clock) -> None:
    rates(orders="4/min")
    key, secret = api_key_create(user=world.owner, label="bot", permissions=["read", "trade"])
    assert budget(_place(world.api("owner"))) == (4, 3, 60)
    by_key = signed_request(APIClient(), key.key, secret, "POST", "/api/orders", ORDER)
    assert by_key.status_code == 201 and budget(by_key) == (4, 2, 60)
    by_page = page_client(world.owner).post("/api/orders", ORDER, content_type="application/json")
    assert by_page.status_code == 201 and budget(by_page) == (4, 1, 60)  # the DRF view's answer
    another_key, another_secret = api_key_create(user=world.owner, label="bot2", permissions=["read", "trade"])
    by_another_key = signed_request(APIClient(), another_key.key, another_secret, "POST", "/api/orders", ORDER)
    assert budget(by_another_key) == (4, 0, 60)  # a second key of the same user: the same budget
    refused(_place(api_client(world.owner)))
    # Another user's budget is whole.
    assert budget(_place(world.api("other"))) == (4, 3, 60)


def test_answers_refused_before_the_count_and_unlimited_operations_carry_none(world: World, rates: Any) -> None:
    rates(orders="3/min")
    assert no_budget(_place(world.api("anonymous")))  # 401: nobody to count for
    key, secret = api_key_create(user=world.owner, label="reader", permissions=["read"])
    read_only = signed_request(APIClient(), key.key, secret, "POST", "/api/orders", ORDER)
    assert read_only.status_code == 403 and no_budget(read_only)  # refused before the count
    listed = world.api("owner").get("/api/orders")
    assert listed.status_code == 200 and no_budget(listed)  # reading orders has no rate
    assert no_budget(world.api("owner").get("/api/wallets"))
    assert budget(_place(world.api("owner")))[1] == 2  # neither of those was counted


def test_a_429_of_the_drf_view_carries_the_budget_and_retry_after(world: World, rates: Any, clock: Clock) -> None:
    rates(orders="1/min")
    page = page_client(world.owner)
    assert budget(page.post("/api/orders", ORDER, content_type="application/json")) == (1, 0, 60)
    clock.now += 20
    assert refused(page.post("/api/orders", ORDER, content_type="application/json")) == (1, 0, 41)


def test_cancels_have_their_own_budget(world: World, rates: Any, clock: Clock) -> None:
    rates(orders="1/min", cancels="2/min")
    owner = world.api("owner")
    placed = _place(owner)
    assert budget(placed) == (1, 0, 60)
    cancelled = owner.post(f"/api/orders/{world.order.pk}/cancel")
    assert cancelled.status_code == 200 and budget(cancelled) == (2, 1, 60)
    clock.now += 30
    again = owner.post(f"/api/orders/{world.order.pk}/cancel")  # terminal now: 409, counted
    assert again.status_code == 409 and budget(again) == (2, 0, 30)
    assert refused(owner.post("/api/orders/cancel-all", {}, format="json")) == (2, 0, 31)
    clock.now += 31
    everything = owner.post("/api/orders/cancel-all", {}, format="json")  # the first cancel has left the window
    assert everything.status_code == 200 and budget(everything) == (2, 0, 29)  # the second leaves in 29 s
    clock.now += 60
    assert budget(owner.post("/api/orders/cancel-all", {}, format="json")) == (2, 1, 60)


# --- registration ---------------------------------------------------------------------------------------


def _register(client: APIClient, name: str, **extra: Any) -> Any:
    return client.post("/api/auth/register", {"username": name, "password": PASSWORD}, format="json", **extra)


def test_the_registration_budget_is_a_window_per_address(db: Any, rates: Any, clock: Clock) -> None:
    rates(register="3/min")
    client = api_client()
    assert budget(_register(client, "first1")) == (3, 2, 60)
    clock.now += 15
    taken = _register(client, "first1")  # refused by a rule, counted
    assert taken.status_code == 400 and budget(taken) == (3, 1, 45)  # the window ends 60 s after it opened
    clock.now += 0.5
    assert budget(_register(client, "second2")) == (3, 0, 45)  # 44.5 s, rounded up
    assert refused(_register(client, "third3")) == (3, 0, 45)  # int(44.5) + 1, as Retry-After
    other = _register(client, "fourth4", REMOTE_ADDR="10.1.2.3")
    assert other.status_code == 201 and budget(other) == (3, 2, 60)  # another address: its own window
    clock.now += 45
    assert budget(_register(client, "fifth5")) == (3, 2, 60)  # a new window


def test_the_reset_lies_within_the_window_whichever_process_opened_it(db: Any, rates: Any, clock: Clock) -> None:
    """A worker reads its clock, then finds the window another opened a moment later: the
    time left was the duration plus that moment (61 s of a minute, seen across four workers)."""
    rates(register="3/min")
    client = api_client()
    assert budget(_register(client, "opener1")) == (3, 2, 60)
    clock.now -= 0.5  # this request's clock was read before the window's start
    assert budget(_register(client, "racer2")) == (3, 1, 60)
    assert budget(_register(client, "third3")) == (3, 0, 60)
    assert refused(_register(client, "late4")) == (3, 0, 61)  # int(60) + 1, as Retry-After always said


def test_the_budget_costs_no_cache_access(db: Any, rates: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The headers are the count's outcome: a registration reads and writes the shared
    cache exactly as the throttle alone does (the window's start, its counter)."""
    rates(register="3/min")
    cache = caches["default"]
    calls: list[str] = []
    for name in ("add", "get", "set", "incr", "get_many", "set_many", "has_key", "delete"):
        original = getattr(cache, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(cache, name, spy)
    answer = _register(api_client(), "counted1")
    assert budget(answer) == (3, 2, 60)
    assert calls == ["add", "get", "add", "incr"]  # the window's start, then its counter


def test_orders_and_cancels_never_reach_the_cache(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = caches["default"]

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the order path reached the cache")

    owner = world.api("owner")
    for name in ("add", "get", "set", "incr", "get_many", "set_many", "has_key", "delete"):
        monkeypatch.setattr(cache, name, refuse)
    placed = _place(owner)
    assert placed.status_code == 201 and budget(placed)[1] >= 0
    cancelled = owner.post(f"/api/orders/{placed.json()['id']}/cancel")
    assert cancelled.status_code == 200 and budget(cancelled)[1] >= 0


# --- every throttled view, and the schema ----------------------------------------------------------------


def _views(patterns: Any) -> list[type[APIView]]:
    found: list[type[APIView]] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found.extend(_views(pattern.url_patterns))
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "cls", None)
            if isinstance(view_class, type) and issubclass(view_class, APIView):
                found.append(view_class)
    return found


def test_every_throttled_view_answers_the_budget() -> None:
    throttled = [view for view in _views(get_resolver().url_patterns) if view.throttle_classes]
    assert len(throttled) >= 4  # orders, cancel, cancel-all, register
    assert [view for view in throttled if not issubclass(view, RateLimitHeaders)] == []


def test_the_schema_documents_the_headers_where_they_are_sent(db: Any) -> None:
    schema = api_client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert set(schema["components"]["headers"]) == set(HEADERS)
    limited = {
        ("/api/orders", "post"),
        ("/api/orders/{order_id}/cancel", "post"),
        ("/api/orders/cancel-all", "post"),
        ("/api/auth/register", "post"),
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.get("responses", {})
            for status, response in responses.items():
                headers = response.get("headers", {})
                if (path, method) in limited and status not in ("401", "403", "414"):
                    assert set(headers) >= set(HEADERS), (path, method, status)
                else:
                    assert not set(headers) & set(HEADERS), (path, method, status)
            if (path, method) in limited:
                too_many = responses["429"]["headers"]
                assert all(too_many[name]["required"] for name in (*HEADERS, "Retry-After")), (path, too_many)
    assert "429" not in schema["paths"]["/api/orders"]["get"]["responses"]  # reading orders has no rate


def test_operation_throttled_follows_the_methods_counted() -> None:
    from accounts.api.views import RegisterApi
    from orders.api.orders import OrdersApi

    assert operation_throttled(OrdersApi, "post") and not operation_throttled(OrdersApi, "get")
    assert operation_throttled(RegisterApi, "post")


def test_the_drf_view_counts_only_the_methods_it_names(world: World, rates: Any) -> None:
    rates(orders="1/min")
    page = page_client(world.owner)
    for _ in range(3):
        assert page.get("/api/orders").status_code == 200
    placed = page.post("/api/orders", json.dumps(ORDER), content_type="application/json")
    assert placed.status_code == 201 and budget(placed) == (1, 0, 60)
