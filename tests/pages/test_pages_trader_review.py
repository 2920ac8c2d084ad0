"""Defects a new trader met on the pages (review of the trader pages against `make run`),
each test failing before its fix."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from orders.models import Order, OrderStatus
from tests.factories import UserFactory, fund
from tests.pages.test_pages_review import ticket_summary
from tests.pages.test_pages_views import HTMX, ORDER_URL, place

pytestmark = pytest.mark.django_db


# --- the ticket's summary of a filled order says at which price ----------------------------


@pytest.mark.parametrize("htmx", [True, False])
def test_a_filled_order_says_its_average_price_and_fee(trader, trader_client, htmx):
    """A limit sell at 1990 filled against bids at 2000 and 2001: the ticket (and, without
    JavaScript, the message after the redirect) said only "...: filled.", so the trader could not
    tell at which price it sold (the book's better prices) without opening the history."""
    buyer = UserFactory()
    fund(buyer, "USDT", "10000")
    place(buyer, side="buy", type="limit", price="2001", quantity="0.1")
    place(buyer, side="buy", type="limit", price="2000", quantity="0.2")
    body = {"side": "sell", "type": "limit", "price": "1990", "quantity": "0.3", "time_in_force": ""}
    summary = ticket_summary(trader_client, body, htmx=htmx)
    order = Order.objects.get(user=trader)
    assert order.status == OrderStatus.FILLED
    # 0.1 x 2001 + 0.2 x 2000 = 600.1 for 0.3: 2000.33333333; the taker fee (12 bps) of 600.1
    assert order.fee_paid == Decimal("0.72012")
    assert "sell limit 0.3 ETH-USDT: filled at average 2000.33333333 USDT, fee 0.72012 USDT." in summary, summary


# --- the history's filters: one not understood leaves the others applied -----------------------


def test_an_unknown_market_in_the_filter_keeps_the_status_filter(trader, trader_client):
    """/orders/?market=XXX-USDT&status=filled: the page said the market filter was not
    understood and listed every order of every status, its Status select still reading "Filled"
    above open orders. The status filter, which was understood, now applies."""
    filled_by = UserFactory()
    fund(filled_by, "ETH", "1")
    place(filled_by, side="sell", type="limit", price="2000", quantity="0.1")
    filled = place(trader, side="buy", type="limit", price="2000", quantity="0.1")
    resting = place(trader, side="buy", type="limit", price="1900", quantity="0.2")
    assert (filled.status, resting.status) == (OrderStatus.FILLED, OrderStatus.OPEN)
    response = trader_client.get("/orders/", {"market": "XXX-USDT", "status": "filled"})
    page = response.content.decode()
    assert response.status_code == 200
    assert [row.order.pk for row in response.context["rows"]] == [filled.pk]
    assert f'id="order-{resting.pk}"' not in page
    assert "XXX-USDT is not one of the available choices" in page and "Showing orders without it." in page
    assert '<option value="filled" selected>' in page


# --- the history's events say their status in words ---------------------------------------------


def test_the_history_events_say_their_status_in_words(trader, trader_client):
    """The events of an order in /orders/ read "partially_filled 12-07 02:37:52" and
    "pending_trigger ...": the codes, beside a status badge reading "Partially Filled"."""
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="0.1")
    partial = place(trader, side="buy", type="limit", price="2000", quantity="0.3")
    stop = place(trader, side="sell", type="stop_loss", stop_price="1500", quantity="0.1")
    assert (partial.status, stop.status) == (OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_TRIGGER)
    page = trader_client.get("/orders/").content.decode()
    events = " ".join(re.findall(r'<ol class="events">(.*?)</ol>', page, re.S))
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", events))
    assert "partially filled" in words and "pending trigger" in words, words
    assert "partially_filled" not in words and "pending_trigger" not in words, words


# --- the ticket's sentence above the fields does not contradict them -------------------------


@pytest.mark.parametrize(
    ("overrides", "code", "field_message"),
    [
        ({"type": "limit", "price": ""}, "invalid_price", "A limit order needs a price."),
        ({"type": "stop_loss", "price": "", "stop_price": ""}, "invalid_price", "stop_price"),
        ({"quantity": "1e25"}, "invalid_quantity", "no exponent"),
    ],
)
def test_the_tickets_sentence_does_not_name_a_cause_the_field_does_not(
    trader, trader_client, overrides, code, field_message
):
    """ "This price does not fit the market (check the tick and the range)." stood above "A
    limit order needs a price.": the sentence named one cause of invalid_price whatever the
    field said. It points to the field's message now, which says why."""
    body = {"side": "buy", "type": "limit", "price": "1900.00", "quantity": "1", "time_in_force": "", **overrides}
    html = trader_client.post(ORDER_URL, body, headers=HTMX).content.decode()
    sentence = re.search(rf'data-code="{code}">([^<]*)<', html)
    assert sentence is not None, html[:2000]
    assert field_message in html
    for cause in ("tick", "range", "step", "minimum"):
        assert cause not in sentence.group(1), sentence.group(1)
