from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from kombu import pools

from config.celery import app as celery_app
from orders.system_accounts import house_user_id
from revenue.chain.runtime import chain_context_reset
from revenue.dispatch import broker_circuit_reset, post_trade_window_reset
from tests.factories import fund, market_create


@pytest.fixture(autouse=True)
def _closed_circuit():
    broker_circuit_reset()
    post_trade_window_reset()
    yield
    broker_circuit_reset()
    post_trade_window_reset()


@pytest.fixture
def eager_tasks():
    """Run published tasks inline, as a worker would right after the commit."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def broker_pools_renew() -> None:
    """Close the app's broker connections and forget their pools, so that the next publish
    connects to the broker the configuration names now. Closing the pools alone kept them as
    the app's: every later publish in the process failed with "Acquire on closed pool" (so
    the tests below never reached the closed port, and a later test's publish failed)."""
    pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker_down(settings):
    """Point publishing at a closed port: nothing can reach a broker."""
    previous = celery_app.conf.broker_url, celery_app.conf.broker_connection_timeout
    celery_app.conf.broker_url = "redis://127.0.0.1:9/0"
    celery_app.conf.broker_connection_timeout = 0.2
    broker_pools_renew()
    yield
    celery_app.conf.broker_url, celery_app.conf.broker_connection_timeout = previous
    broker_pools_renew()


@pytest.fixture
def clock(monkeypatch):
    """Move the service's clock forward (timezone.now is read at call time everywhere)."""
    real_now = timezone.now
    offset = {"value": timedelta(0)}

    def now() -> datetime:
        return real_now() + offset["value"]

    monkeypatch.setattr(timezone, "now", now)

    class Clock:
        def advance(self, **kwargs: float) -> None:
            offset["value"] += timedelta(**kwargs)

    return Clock()


@pytest.fixture
def eth_market(db):
    market = market_create("ETH-USDT")
    from django.contrib.auth import get_user_model

    house = get_user_model().objects.get(pk=house_user_id())
    fund(house, "ETH", "10", bucket=market.pk)
    fund(house, "USDT", "20000", bucket=market.pk)
    return market


@pytest.fixture
def embedded(settings, eth_market):
    """The in-process chain (no WEB3_PROVIDER_URI), two confirmations, a fresh context."""
    settings.WEB3_PROVIDER_URI = ""
    settings.CHAIN_CONFIRMATIONS = 2
    chain_context_reset()
    yield eth_market
    chain_context_reset()
