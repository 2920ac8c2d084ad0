"""With the cache (Redis) unreachable, nothing that only uses it to count fails: orders,
logins, registration, delivery-failure logging and the delivery debounce go on (fail
open, logged once every few seconds), instead of a 500 per request."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from revenue.dispatch import revenue_delivery_dispatch
from revenue.failure_log import delivery_failures_log
from tests.conftest import jwt_client
from tests.factories import PASSWORD, UserFactory, fund, market_create

pytestmark = pytest.mark.django_db

# Port 1 on loopback: nothing listens, every connection is refused at once.
UNREACHABLE_REDIS = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
}


@pytest.fixture
def cache_down():
    from core import cache as core_cache

    core_cache.CACHE_FAILURE_LINES.reset()  # the warning rate limit is per process
    with override_settings(CACHES=UNREACHABLE_REDIS):
        from django.core.cache import cache

        with pytest.raises(Exception):  # noqa: B017  (the premise: the cache really is down)
            cache.get("probe")
        yield


def test_orders_are_placed_while_the_cache_is_down(cache_down, caplog):
    market_create("ETH-USDT")
    user = UserFactory()
    fund(user, "USDT", "10000")
    client = jwt_client(user)
    with caplog.at_level(logging.WARNING, logger="core.cache"):
        for _ in range(3):
            response = client.post(
                "/api/orders",
                {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1900.00"},
                format="json",
            )
            assert response.status_code == 201, response.content
    # The order rate is counted in the web process (core.api.throttling): the cache is not
    # asked, so nothing about it is even logged.
    assert not [r for r in caplog.records if r.name == "core.cache"]


def test_logins_and_registration_work_and_failed_logins_are_refused(cache_down, api_client):
    user = UserFactory()
    for _ in range(3):
        wrong = api_client.post("/api/auth/token", {"username": user.username, "password": "nope"}, format="json")
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_credentials"
    right = api_client.post("/api/auth/token", {"username": user.username, "password": PASSWORD}, format="json")
    assert right.status_code == 200 and right.json()["access"]
    registered = api_client.post("/api/auth/register", {"username": "outage", "password": PASSWORD}, format="json")
    assert registered.status_code == 201, registered.content


def test_delivery_failures_are_still_logged_under_a_per_process_cap(cache_down, caplog):
    with caplog.at_level(logging.WARNING, logger="revenue.delivery"):
        written = delivery_failures_log(failures=[(index, 3) for index in range(1, 31)], error="node down")
    assert written == 12  # failures 1-10, then every 10th: 20 and 30


def test_the_delivery_debounce_publishes_anyway(cache_down, settings, monkeypatch):
    from config.celery import app

    published: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, **kwargs: published.append(name))
    settings.DELIVERY_ENABLED = True
    assert revenue_delivery_dispatch() is True
    assert published == ["revenue.tasks.revenue_delivery_run"]
