from __future__ import annotations

from collections.abc import Callable

import pytest

from orders.models import Market
from tests.factories import market_create
from tests.orders.support import Trader, trader_create


@pytest.fixture
def market(db) -> Market:
    """ETH-USDT: tick 0.01, step 0.0001, reference 2000.00 (slippage guard 1900-2100)."""
    return market_create("ETH-USDT")


@pytest.fixture
def two_markets(market) -> None:
    """ETH-USDT and BTC-USDT (reference 30000.00)."""
    market_create("BTC-USDT", reference_price="30000.00")


@pytest.fixture
def trader(db) -> Callable[..., Trader]:
    """A factory of funded traders with their own API client: trader(USDT="5000", ETH="1")."""
    return trader_create
