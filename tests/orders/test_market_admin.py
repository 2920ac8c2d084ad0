"""Markets as the admin configures them (orders/admin.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from orders.models import Asset, Market
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


def _add(
    client: Client, *, tick: str, step: str, symbol: str = "XQ-USDT", min_quantity: str | None = None
) -> tuple[int, str]:
    base, _ = Asset.objects.get_or_create(symbol="XQ", defaults={"name": "XQ"})
    quote, _ = Asset.objects.get_or_create(symbol="USDT", defaults={"name": "Tether"})
    response = client.post(
        "/admin/orders/market/add/",
        {
            "symbol": symbol,
            "base": base.pk,
            "quote": quote.pk,
            "price_tick": tick,
            "quantity_step": step,
            "min_quantity": step if min_quantity is None else min_quantity,
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


@pytest.mark.parametrize("symbol", ["XQ/USDT", "xq-usdt", "FOO-BAR", "USDT-XQ", "XQUSDT"])
def test_a_market_is_named_after_its_pair_or_refused(symbol):
    """Any symbol was taken: "XQ/USDT" had no URL, so the home page and every trade page
    (their market tabs) answered 500 from then on; "xq-usdt" was a second market beside
    "XQ-USDT", "FOO-BAR" traded XQ against USDT under another name."""
    client = Client()
    client.force_login(StaffFactory())
    status, page = _add(client, tick="0.01", step="0.001", symbol=symbol)
    assert status == 200 and not Market.objects.exists(), page[:2000]
    assert "XQ-USDT" in page  # the message says what the symbol must be
    assert client.get("/").status_code == 200


def test_a_market_no_engine_shard_owns_is_refused(settings):
    """ENGINE_SHARDS naming its markets, none taking '*': a market added in the admin was
    created, listed by GET /api/markets, and its every order answered 'No such market'."""
    settings.ENGINE_SHARDS = "eth=ETH-USDT@ipc:///tmp/a.sock"
    client = Client()
    client.force_login(StaffFactory())
    status, page = _add(client, tick="0.01", step="0.001")
    assert status == 200 and not Market.objects.exists()
    assert "No engine shard owns XQ-USDT" in page
    settings.ENGINE_SHARDS = "eth=ETH-USDT@ipc:///tmp/a.sock;xq=XQ-USDT@ipc:///tmp/b.sock"
    assert _add(client, tick="0.01", step="0.001")[0] == 302


@pytest.mark.parametrize("tick", ["-0.01", "0"])
def test_a_non_positive_tick_is_a_form_error_not_a_500(tick):
    client = Client()
    client.force_login(StaffFactory())
    status, _ = _add(client, tick=tick, step="0.001")
    assert status == 200 and not Market.objects.exists()


def test_the_minimum_quantity_is_a_multiple_of_the_step_on_add_and_on_change():
    """A minimum of 0.0015 with a step of 0.001 was taken: the browser counts the input's
    steps from its min (0.0015, 0.0025, ...) while the service wants multiples of 0.001, so no
    amount passed both."""
    client = Client()
    client.force_login(StaffFactory())
    status, page = _add(client, tick="0.01", step="0.001", min_quantity="0.0015")
    assert status == 200 and not Market.objects.exists()
    assert "multiple of the quantity step" in page
    assert _add(client, tick="0.01", step="0.001", min_quantity="0.002")[0] == 302
    market = Market.objects.get(symbol="XQ-USDT")
    answer = client.post(f"/admin/orders/market/{market.pk}/change/", {"min_quantity": "0.0025", "is_active": "on"})
    assert answer.status_code == 200 and "multiple of the quantity step" in answer.content.decode()
    market.refresh_from_db()
    assert market.min_quantity == Decimal("0.002")
    answer = client.post(f"/admin/orders/market/{market.pk}/change/", {"min_quantity": "0.003", "is_active": "on"})
    assert answer.status_code == 302


@pytest.mark.parametrize("symbol", ["X/Y", "xq", "X Q", "X-Q", ""])
def test_an_asset_symbol_is_capitals_and_digits_and_stays_as_created(symbol):
    """A market's symbol is BASE-QUOTE and part of its URL: an asset "X/Y" (or "X-Q") made a
    market no page could link."""
    client = Client()
    client.force_login(StaffFactory())
    answer = client.post("/admin/orders/asset/add/", {"symbol": symbol, "name": "Some coin"})
    assert answer.status_code == 200 and not Asset.objects.filter(name="Some coin").exists()
    assert client.post("/admin/orders/asset/add/", {"symbol": "XQ2", "name": "Some coin"}).status_code == 302
    asset = Asset.objects.get(symbol="XQ2")
    page = client.get(f"/admin/orders/asset/{asset.pk}/change/").content.decode()
    assert 'name="symbol"' not in page and 'name="name"' in page


def test_a_market_cannot_be_deleted_even_by_a_superuser(client):
    # A market the engine had loaded was deleted here: the next batch with an order in it
    # failed on its foreign key, the other commands of that batch retried with it.
    market = Market.objects.create(
        symbol="XQ-USDT",
        base=Asset.objects.create(symbol="XQ", name="XQ"),
        quote=Asset.objects.get_or_create(symbol="USDT", defaults={"name": "Tether"})[0],
        price_tick=Decimal("0.01"),
        quantity_step=Decimal("0.01"),
        min_quantity=Decimal("0.01"),
        reference_price=Decimal("1.00"),
    )
    client.force_login(StaffFactory(is_superuser=True))
    assert client.get(f"/admin/orders/market/{market.pk}/delete/").status_code == 403
    assert client.post(f"/admin/orders/market/{market.pk}/delete/", {"post": "yes"}).status_code == 403
    listing = client.get("/admin/orders/market/").content.decode()
    assert 'value="delete_selected"' not in listing
    assert Market.objects.filter(pk=market.pk).exists()
