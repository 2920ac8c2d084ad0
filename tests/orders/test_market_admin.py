"""Markets as the admin configures them (orders/admin.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from orders.models import Asset, Market
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


def _add(client: Client, *, tick: str, step: str) -> tuple[int, str]:
    base, _ = Asset.objects.get_or_create(symbol="XQ", defaults={"name": "XQ"})
    quote, _ = Asset.objects.get_or_create(symbol="USDT", defaults={"name": "Tether"})
    response = client.post(
        "/admin/orders/market/add/",
        {
            "symbol": "XQ-USDT",
            "base": base.pk,
            "quote": quote.pk,
            "price_tick": tick,
            "quantity_step": step,
            "min_quantity": step,
            "reference_price": "1.0000",
            "is_active": "on",
        },
    )
    return response.status_code, response.content.decode()


def test_a_market_whose_fills_could_not_be_paid_exactly_is_refused():
    """A fill moves price x quantity of the quote asset, cut to 8 decimals: with a tick of
    1e-8 and a step of 1e-8 a fill of 1e-8 at 1e-8 moved 0 (the seller gave its base for
    nothing). Every price and quantity being multiples of tick and step, the quote is
    exact for every fill when tick x step has at most 8 decimals."""
    client = Client()
    client.force_login(StaffFactory())
    status, page = _add(client, tick="0.00000001", step="0.00000001")
    assert status == 200 and not Market.objects.filter(symbol="XQ-USDT").exists()
    assert "8 decimals" in page
    status, _ = _add(client, tick="0.0001", step="0.0001")
    assert status == 302
    assert Market.objects.get(symbol="XQ-USDT").price_tick == Decimal("0.0001")


def test_a_market_is_added_with_its_reference_price_and_keeps_its_steps():
    """The reference price was read-only on the add page too: adding a market answered 500
    (NOT NULL). Once created its pair and steps stay (the leading engine keeps the steps it
    loaded, and resting orders are multiples of them)."""
    client = Client()
    client.force_login(StaffFactory())
    status, _ = _add(client, tick="0.01", step="0.001")
    assert status == 302
    market = Market.objects.get(symbol="XQ-USDT")
    assert (market.price_tick, market.quantity_step, market.reference_price) == (
        Decimal("0.01"),
        Decimal("0.001"),
        Decimal("1"),
    )
    page = client.get(f"/admin/orders/market/{market.pk}/change/").content.decode()
    assert 'name="price_tick"' not in page and 'name="quantity_step"' not in page
    assert 'name="min_quantity"' in page and 'name="is_active"' in page
