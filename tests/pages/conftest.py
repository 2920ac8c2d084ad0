"""The pages' common fixtures: one market and a funded trader signed in to the pages
(test_pages_views.py keeps its own market and trader, with TTX besides)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import UserFactory, fund, market_create


@pytest.fixture
def market():
    return market_create("ETH-USDT")


@pytest.fixture
def trader(market):
    user = UserFactory()
    fund(user, "USDT", "10000")
    fund(user, "ETH", "5")
    return user


@pytest.fixture
def trader_client(trader) -> Client:
    client = Client()
    client.force_login(trader)
    return client
