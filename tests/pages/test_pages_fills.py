"""/fills/: every fill of the trader's, all markets, newest first (the trade page lists a
market's latest 20 only, so older fills had no page)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from orders.engine.requests import OrderRequest
from orders.models import Order
from orders.services.orders import order_place
from orders.templatetags.page_format import amount
from tests.factories import UserFactory, fund, market_create

pytestmark = pytest.mark.django_db


def place(user, **fields) -> Order:
    fields.setdefault("market", "ETH-USDT")
    return Order.objects.get(pk=order_place(user=user, request=OrderRequest(**fields)).order_id)


def _page(client: Client, query: str = "") -> str:
    response = client.get(f"/fills/{query}")
    assert response.status_code == 200
    return response.content.decode()


def _row(html: str, trade_id: int) -> str:
    start = html.index(f'<tr id="fill-{trade_id}"')
    return html[start : html.index("</tr>", start)]


@pytest.fixture
def maker():
    user = UserFactory()
    fund(user, "ETH", "10")
    fund(user, "TTX", "100")
    return user


def test_each_side_sees_its_own_fill(market, trader, trader_client, maker):
    resting = place(maker, side="sell", type="limit", price="2000.00", quantity="0.5")
    taken = place(trader, side="buy", type="market", quantity="0.5")
    trade = taken.taker_trades.get()

    mine = _row(_page(trader_client), trade.pk)
    assert "ETH-USDT" in mine and ">Buy<" in mine and "Taker" in mine
    assert '"num">2,000.00<' in mine and '"num">0.5000<' in mine
    assert '"num">1,000 <span class="muted">USDT<' in mine  # the total
    assert f'"num fee">{amount(trade.taker_fee)} <span class="muted">USDT<' in mine and f"#{taken.pk}" in mine

    maker_client = Client()
    maker_client.force_login(maker)
    theirs = _row(_page(maker_client), trade.pk)
    assert ">Sell<" in theirs and "Maker" in theirs and f"#{resting.pk}" in theirs
    assert f'"num fee">{amount(trade.maker_fee)} <' in theirs


def test_fills_are_filtered_by_market_paginated_and_only_the_callers(market, trader, trader_client, maker):
    market_create("TTX-USDT", price_tick="0.0001", quantity_step="1", min_quantity="1", reference_price="0.5000")
    for _ in range(26):
        place(maker, side="sell", type="limit", price="2000.00", quantity="0.01")
        place(trader, side="buy", type="market", quantity="0.01")
    place(maker, market="TTX-USDT", side="sell", type="limit", price="0.5000", quantity="10")
    ttx = place(trader, market="TTX-USDT", side="buy", type="market", quantity="10").taker_trades.get()
    stranger = UserFactory()
    fund(stranger, "USDT", "10000")
    place(maker, side="sell", type="limit", price="2000.00", quantity="0.01")
    foreign = place(stranger, side="buy", type="market", quantity="0.01").taker_trades.get()

    first = _page(trader_client)
    assert "27 fills" in first and "Page 1 of 2" in first and first.count('<tr id="fill-') == 25
    assert f'id="fill-{ttx.pk}"' in first  # the newest
    second = _page(trader_client, "?page=2")
    assert second.count('<tr id="fill-') == 2
    assert f'id="fill-{foreign.pk}"' not in first + second

    only_ttx = _page(trader_client, "?market=TTX-USDT")
    assert "1 fill<" in only_ttx and f'id="fill-{ttx.pk}"' in only_ttx
    eth = _page(trader_client, "?market=ETH-USDT&page=2")
    assert "market=ETH-USDT&amp;page=1" in eth and eth.count('<tr id="fill-') == 1
    unknown = _page(trader_client, "?market=DOGE-USDT")
    assert "invalid_parameter" in unknown and "27 fills" in unknown  # said, then everything shown


def test_the_page_reads_the_same_statements_whatever_its_fills(market, trader, trader_client, maker):
    def statements() -> int:
        with CaptureQueriesContext(connection) as queries:
            _page(trader_client)
        return len(queries)

    place(maker, side="sell", type="limit", price="2000.00", quantity="0.01")
    place(trader, side="buy", type="market", quantity="0.01")
    one = statements()
    for _ in range(5):
        place(maker, side="sell", type="limit", price="2000.00", quantity="0.01")
        place(trader, side="buy", type="market", quantity="0.01")
    assert statements() == one


def test_the_nav_links_the_page_for_a_trader_only(market, trader_client):
    assert 'href="/fills/"' in _page(trader_client)
    assert 'href="/fills/"' not in Client().get("/").content.decode()
    assert Client().get("/fills/").status_code == 302  # to the login
