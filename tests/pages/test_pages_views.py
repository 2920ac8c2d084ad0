"""The server-rendered pages through Django's test client: who sees what, forms,
CSRF, the no-JavaScript order flow, htmx partials, escaping and staff links."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from accounts.error_text import SENTENCES, error_sentence
from orders.engine.requests import OrderRequest
from orders.models import Order, OrderStatus, Trade
from orders.services.orders import order_place
from tests.conftest import jwt_client
from tests.factories import PASSWORD, StaffFactory, UserFactory, fund, market_create

pytestmark = pytest.mark.django_db

TRADE = "/trade/ETH-USDT"
ORDER_URL = "/trade/ETH-USDT/order"
HTMX = {"HX-Request": "true", "HX-Current-URL": f"http://testserver{TRADE}"}
FAILURE_REPORT = "/admin/revenue/revenueevent/failure-report/"
WORKER_STATUS = "/admin/revenue/revenueevent/worker-status/"


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()  # login throttling counters
    yield
    cache.clear()


@pytest.fixture
def market(market):
    """The conftest's ETH-USDT, and TTX-USDT beside it."""
    market_create("TTX-USDT", price_tick="0.0001", quantity_step="1", min_quantity="1", reference_price="0.5000")
    return market


@pytest.fixture
def trader(trader):
    """The conftest's trader, holding TTX too."""
    fund(trader, "TTX", "1500")
    return trader


@pytest.fixture
def client_for():
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def trader_client(trader, client_for) -> Client:
    return client_for(trader)


def place(user, **fields) -> Order:
    fields.setdefault("market", "ETH-USDT")
    return Order.objects.get(pk=order_place(user=user, request=OrderRequest(**fields)).order_id)


def limit_order(**overrides: str) -> dict[str, str]:
    return {"side": "buy", "type": "limit", "price": "1900.00", "quantity": "1", "time_in_force": "", **overrides}


def text(response) -> str:
    return response.content.decode()


def shown_error(code: str, message: str = "") -> str:
    """How a page shows an error: the sentence of accounts.error_text, the code in a tooltip."""
    return f'title="{code}" data-code="{code}">{escape(error_sentence(code, message))}'


# --- who sees what ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", TRADE, "/flywheel/", "/login", "/register", "/trade/"])
def test_public_pages_render_for_anonymous_visitors(client, market, path):
    response = client.get(path, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain in ([], [(TRADE, 302)])
    assert "<main" in text(response)


@pytest.mark.parametrize("path", ["/", TRADE, "/flywheel/", "/orders/", "/wallet/"])
def test_every_page_renders_for_a_trader(trader_client, path):
    response = trader_client.get(path)
    assert response.status_code == 200
    assert 'action="/logout"' in text(response)


@pytest.mark.parametrize("path", ["/orders/", "/wallet/", "/wallet/live"])
def test_personal_pages_require_login(client, market, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={path}"


def test_posting_an_order_requires_login(client, market):
    response = client.post(ORDER_URL, limit_order())
    assert response.status_code == 302 and response["Location"].startswith("/login?next=")
    assert not Order.objects.exists()


def test_an_expired_session_under_htmx_keeps_the_ticket_and_says_so(client, market):
    # The order ticket (tests/pages/test_pages_trader.py has the details); other htmx posts
    # still send the page to the login form.
    response = client.post(
        ORDER_URL, limit_order(), headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{TRADE}"}
    )
    assert response.status_code == 401 and "HX-Redirect" not in response
    assert "Your session expired, log in again" in text(response)


def test_an_expired_session_keeps_the_whole_address_for_after_login(client, market):
    current = "http://testserver/orders/?market=ETH-USDT&status=open"
    response = client.post("/orders/1/cancel", headers={"HX-Request": "true", "HX-Current-URL": current})
    assert response["HX-Redirect"] == "/login?next=/orders/%3Fmarket%3DETH-USDT%26status%3Dopen"


def test_unknown_market_is_a_404_page(client, market):
    assert client.get("/trade/NOPE-USDT").status_code == 404
    assert client.get("/trade/NOPE-USDT/live").status_code == 404


def test_a_symbol_typed_in_lower_case_finds_its_market(client, market):
    response = client.get("/trade/eth-usdt")
    assert response.status_code == 302
    assert response["Location"] == TRADE
    assert client.get("/trade/nope-usdt").status_code == 404


def test_anonymous_trade_page_invites_to_log_in_and_shows_no_order_form(client, market):
    body = text(client.get(TRADE))
    assert 'id="order-entry"' not in body
    assert "Log in to trade ETH-USDT" in body
    assert 'data-live="book"' in body and 'data-live="open_orders"' not in body


# --- accounts ---------------------------------------------------------------------------------


def test_login_logs_in_with_the_session_and_follows_next(client, trader):
    response = client.post("/login", {"username": trader.username, "password": PASSWORD, "next": "/wallet/"})
    assert response.status_code == 302 and response["Location"] == "/wallet/"
    assert client.get("/wallet/").status_code == 200


def test_login_ignores_a_foreign_next(client, trader):
    response = client.post("/login", {"username": trader.username, "password": PASSWORD, "next": "https://evil.test/"})
    assert response["Location"] == "/"


def test_failed_logins_show_the_api_error_and_are_throttled(client, trader, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    for _ in range(2):
        response = client.post("/login", {"username": trader.username, "password": "wrong"})
        assert response.status_code == 401
        assert "invalid_credentials" in text(response) and "Wrong username or password." in text(response)
    response = client.post("/login", {"username": trader.username, "password": PASSWORD})
    assert response.status_code == 429
    assert shown_error("throttled") in text(response)
    assert "_auth_user_id" not in client.session


def test_register_creates_the_account_and_logs_in(client, market):
    form = {
        "username": "newtrader",
        "email": "",
        "password": "a-long-pass-phrase-9",
        "password_confirm": "a-long-pass-phrase-9",
    }
    response = client.post("/register", form, follow=True)
    assert response.redirect_chain == [("/", 302)]
    assert "Welcome, newtrader" in text(response)
    assert client.get("/wallet/").status_code == 200


def test_register_from_the_trade_page_goes_back_to_it(client, market):
    # "Log in to trade ETH-USDT. Log in | Register": the login came back to the market, the
    # registration went to the markets' list.
    page = text(client.get(TRADE))
    assert 'href="/register?next=/trade/ETH-USDT"' in page
    assert 'name="next" value="/trade/ETH-USDT"' in text(client.get("/register?next=/trade/ETH-USDT"))
    form = {"username": "newtrader", "password": "a-long-pass-phrase-9", "password_confirm": "a-long-pass-phrase-9"}
    response = client.post("/register", {**form, "next": TRADE})
    assert response.status_code == 302 and response["Location"] == TRADE
    foreign = Client().post("/register", {**form, "username": "othertrader", "next": "https://evil.test/"})
    assert foreign.status_code == 302 and foreign["Location"] == "/"


def test_register_shows_the_service_errors_with_their_codes(client, trader):
    taken = {
        "username": trader.username,
        "password": "a-long-pass-phrase-9",
        "password_confirm": "a-long-pass-phrase-9",
    }
    response = client.post("/register", taken)
    assert response.status_code == 400
    assert "username_taken" in text(response) and "This username is already taken." in text(response)
    weak = {"username": "someone", "password": "12345678", "password_confirm": "12345678"}
    response = client.post("/register", weak)
    assert "weak_password" in text(response) and "This password is entirely numeric." in text(response)
    mismatch = {"username": "someone", "password": "a-long-pass-phrase-9", "password_confirm": "other-long-phrase-9"}
    assert "The two passwords differ." in text(client.post("/register", mismatch))


def test_logout_is_a_post(trader_client):
    opened = trader_client.get("/logout")  # opened as a page: back to the markets, still logged in
    assert opened.status_code == 302 and opened["Location"] == "/"
    assert "_auth_user_id" in trader_client.session
    assert trader_client.put("/logout").status_code == 405
    response = trader_client.post("/logout", follow=True)
    assert response.redirect_chain == [("/", 302)]
    assert "You are logged out." in text(response)
    assert trader_client.get("/wallet/").status_code == 302


def test_csrf_is_enforced_on_page_forms(trader):
    client = Client(enforce_csrf_checks=True)
    client.force_login(trader)
    assert client.post(ORDER_URL, limit_order()).status_code == 403
    assert not Order.objects.exists()
    page = text(client.get(TRADE))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(ORDER_URL, {**limit_order(), "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Order.objects.filter(user=trader).count() == 1
    assert Client(enforce_csrf_checks=True).post("/login", {"username": "x", "password": "y"}).status_code == 403


# --- the order form ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"price": "1900.001"},  # off the price tick
        {"quantity": "0.00001"},  # off the quantity step
        {"quantity": "500"},  # insufficient funds
        {"type": "market", "price": "", "time_in_force": "GTC"},  # GTC on a market order
        {"type": "limit", "price": ""},  # a limit order without a price
        {"type": "stop_loss", "price": "", "stop_price": ""},  # a stop without its stop price
        {"quantity": ""},  # an empty amount: invalid_quantity, as the API answers "quantity": ""
        {"side": "hold"},  # not a side
    ],
)
def test_order_form_errors_use_the_api_codes_and_messages(trader, trader_client, overrides):
    body = limit_order(**overrides)
    api = jwt_client(trader).post(
        # The ticket sends every field; the API's client leaves out those it does not use
        # (the amount is always used).
        "/api/orders",
        {"market": "ETH-USDT", **{k: v for k, v in body.items() if v != "" or k == "quantity"}},
        format="json",
    )
    error = api.json()["error"]
    page = trader_client.post(ORDER_URL, body)
    assert page.status_code == api.status_code
    html = text(page)
    assert shown_error(error["code"], error["message"]) in html
    for field, messages in (error.get("fields") or {}).items():
        for message in messages:
            if error["code"] != "validation_error":  # shape errors are worded by each framework
                assert message in html, field
    assert 'id="order-entry"' in html  # the ticket is shown again with the input kept
    assert not Order.objects.exists()


def test_an_unavailable_database_is_a_retryable_answer_not_a_crash(trader_client, monkeypatch):
    from django.db import OperationalError

    def busy(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("orders.services.orders.order_place", busy)  # under the ticket's claim
    response = trader_client.post(ORDER_URL, limit_order())
    assert response.status_code == 503 and shown_error("service_unavailable") in text(response)


def test_order_form_fields_carry_tick_and_step(trader_client):
    html = text(trader_client.get(TRADE))
    assert re.search(r'id="order-price"[^>]*step="0.01" min="0.01"', html)
    assert re.search(r'id="order-quantity"[^>]*step="0.0001" min="0.0001"', html)
    assert '<label for="order-price">' in html and '<label for="order-quantity">' in html
    assert "Available USDT" in html and "10,000" in html


def test_placing_an_order_without_javascript_redirects_with_a_message(trader, trader_client):
    response = trader_client.post(ORDER_URL, limit_order(quantity="1.5", client_order_id="ticket-1"))
    assert response.status_code == 302 and response["Location"] == TRADE
    order = Order.objects.get(user=trader)
    assert (order.status, order.price, order.quantity, order.client_order_id) == (
        "open",
        Decimal("1900"),
        Decimal("1.5"),
        "ticket-1",
    )
    page = text(trader_client.get(TRADE))
    assert f"Order #{order.pk} buy limit 1.5 ETH-USDT: open." in page
    assert f'id="open-order-{order.pk}"' in page
    assert 'data-price="1900.00"' in page  # in the book


def test_repeating_a_client_order_id_shows_the_original_order(trader, trader_client):
    trader_client.post(ORDER_URL, limit_order(client_order_id="same"))
    response = trader_client.post(ORDER_URL, limit_order(client_order_id="same"), follow=True)
    assert "already exists with this client order id" in text(response)
    assert Order.objects.filter(user=trader).count() == 1
    conflict = trader_client.post(ORDER_URL, limit_order(client_order_id="same", quantity="2"))
    assert conflict.status_code == 409 and "duplicate_client_order_id" in text(conflict)


def test_an_order_that_expires_is_reported_as_such(trader, trader_client):
    response = trader_client.post(ORDER_URL, limit_order(time_in_force="FOK"), follow=True)
    assert f"expired ({SENTENCES['fok_not_fillable']})" in text(response)
    assert Order.objects.get(user=trader).status == OrderStatus.EXPIRED


def test_placing_with_htmx_swaps_the_ticket_and_refreshes_the_live_regions(trader, trader_client):
    response = trader_client.post(ORDER_URL, limit_order(client_order_id="x1"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "live-refresh" in response["HX-Trigger"]
    html = text(response)
    assert html.lstrip().startswith('<form id="order-entry"') and "<html" not in html
    order = Order.objects.get(user=trader)
    assert f"Order #{order.pk} buy limit 1 ETH-USDT: open." in html
    assert 'value="1900.00"' in html and 'value="x1"' not in html  # same ticket, without its client id

    error = trader_client.post(ORDER_URL, limit_order(price="1.001"), headers={"HX-Request": "true"})
    assert error.status_code == 400 and "HX-Trigger" not in error
    assert shown_error("invalid_price") in text(error)


def test_a_stop_order_from_the_form_waits_for_its_trigger(trader, trader_client):
    trader_client.post(ORDER_URL, limit_order(type="stop_loss", side="sell", price="", stop_price="1800.00"))
    order = Order.objects.get(user=trader)
    assert (order.type, order.status, order.stop_price) == ("stop_loss", "pending_trigger", Decimal("1800"))
    assert f'id="open-order-{order.pk}"' in text(trader_client.get(TRADE))


# --- cancelling ---------------------------------------------------------------------------------------


def test_cancel_without_javascript(trader, trader_client, client_for):
    order = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    response = trader_client.post(f"/orders/{order.pk}/cancel", {"next": TRADE}, follow=True)
    assert response.redirect_chain == [(TRADE, 302)]
    assert f"Order #{order.pk} cancelled." in text(response)
    order.refresh_from_db()
    assert (order.status, order.status_reason) == ("cancelled", "user_cancelled")

    again = trader_client.post(f"/orders/{order.pk}/cancel", follow=True)
    assert again.redirect_chain == [("/orders/", 302)]
    assert SENTENCES["order_not_cancellable"] in text(again)

    stranger = client_for(UserFactory())
    other = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    assert SENTENCES["order_not_found"] in text(stranger.post(f"/orders/{other.pk}/cancel", follow=True))
    assert SENTENCES["order_not_found"] in text(stranger.post("/orders/99999999999999999999/cancel", follow=True))
    other.refresh_from_db()
    assert other.status == "open"


def test_cancel_with_htmx_answers_a_toast_and_refreshes(trader, trader_client):
    order = place(trader, side="sell", type="limit", price="2100.00", quantity="1")
    response = trader_client.post(f"/orders/{order.pk}/cancel", headers={"HX-Request": "true"})
    assert response.status_code == 200 and "live-refresh" in response["HX-Trigger"]
    assert "hx-swap-oob" in text(response) and f"Order #{order.pk} cancelled." in text(response)
    again = trader_client.post(f"/orders/{order.pk}/cancel", headers={"HX-Request": "true"})
    assert again.status_code == 409 and SENTENCES["order_not_cancellable"] in text(again)


def test_a_cancel_needs_a_post_and_a_session(client, trader, trader_client):
    order = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    opened = trader_client.get(f"/orders/{order.pk}/cancel")  # the order history, nothing cancelled
    assert opened.status_code == 302 and opened["Location"] == "/orders/"
    assert trader_client.put(f"/orders/{order.pk}/cancel").status_code == 405
    assert client.post(f"/orders/{order.pk}/cancel").status_code == 302
    order.refresh_from_db()
    assert order.status == "open"


def test_cancel_all_takes_every_live_order_of_the_trader_in_the_market_and_no_other(trader, trader_client, client_for):
    mine = [
        place(trader, side="buy", type="limit", price="1900.00", quantity="1"),
        place(trader, side="sell", type="limit", price="2100.00", quantity="1"),
        place(trader, side="sell", type="stop_loss", stop_price="1800.00", quantity="1"),
    ]
    other_market = market_create("BTC-USDT")
    fund(trader, "BTC", "1")
    elsewhere = place(trader, market=other_market.symbol, side="sell", type="limit", price="90000.00", quantity="0.1")
    stranger = UserFactory()
    fund(stranger, "USDT", "10000")
    theirs = place(stranger, side="buy", type="limit", price="1900.00", quantity="1")
    assert 'action="/trade/ETH-USDT/cancel-all"' in text(trader_client.get(TRADE))

    # Without JavaScript the button asks first (htmx asks with hx-confirm): nothing cancelled yet.
    asked = trader_client.post("/trade/ETH-USDT/cancel-all")
    assert asked.status_code == 200
    assert "your 3 open orders in ETH-USDT, pending stops included" in text(asked)
    assert 'name="confirmed" value="yes"' in text(asked) and 'href="/trade/ETH-USDT"' in text(asked)
    assert {o.status for o in Order.objects.filter(pk__in=[o.pk for o in mine])} == {"open", "pending_trigger"}
    response = trader_client.post("/trade/ETH-USDT/cancel-all", {"confirmed": "yes"}, follow=True)
    assert response.redirect_chain == [(TRADE, 302)]
    assert "3 open orders in ETH-USDT cancelled." in text(response)
    assert {o.status for o in Order.objects.filter(pk__in=[o.pk for o in mine])} == {"cancelled"}
    assert Order.objects.get(pk=elsewhere.pk).status == "open"
    assert Order.objects.get(pk=theirs.pk).status == "open"
    again = trader_client.post("/trade/ETH-USDT/cancel-all", headers={"HX-Request": "true"})
    assert again.status_code == 200 and "live-refresh" in again["HX-Trigger"]
    assert "No open order in ETH-USDT to cancel." in text(again)
    assert client_for(stranger).post("/trade/NOPE-USDT/cancel-all").status_code == 404


def test_cancel_all_needs_a_post_and_a_session(client, trader, trader_client):
    order = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    opened = trader_client.get("/trade/ETH-USDT/cancel-all")  # the trade screen, nothing cancelled
    assert opened.status_code == 302 and opened["Location"] == "/trade/ETH-USDT"
    assert trader_client.put("/trade/ETH-USDT/cancel-all").status_code == 405
    assert client.post("/trade/ETH-USDT/cancel-all").status_code == 302
    order.refresh_from_db()
    assert order.status == "open"


# --- history, wallet, escaping ------------------------------------------------------------------------


def test_history_shows_status_reason_and_every_event(trader, trader_client):
    cancelled = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    trader_client.post(f"/orders/{cancelled.pk}/cancel")
    expired = place(trader, side="buy", type="limit", price="1900.00", quantity="1", time_in_force="FOK")
    html = text(trader_client.get("/orders/"))
    start = html.index(f'id="order-{cancelled.pk}"')
    end = html.find('id="order-', start + 1)
    row = html[start : end if end != -1 else None]
    assert "user_cancelled" in row
    events = list(cancelled.events.order_by("id"))
    assert [e.status for e in events] == ["open", "cancelled"]
    for event in events:
        # Each event's exact time is in its <time datetime="..."> attribute (ISO 8601).
        assert f'datetime="{event.at.isoformat()}"' in row, (event.at, row)
    assert "fok_not_fillable" in html[html.index(f'id="order-{expired.pk}"') :][:4000]


def test_history_filters_by_market_and_status(trader, trader_client):
    fund(trader, "USDT", "1000")
    eth = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    ttx = place(trader, market="TTX-USDT", side="buy", type="limit", price="0.4000", quantity="10")
    trader_client.post(f"/orders/{ttx.pk}/cancel")
    by_market = text(trader_client.get("/orders/?market=TTX-USDT"))
    assert f'id="order-{ttx.pk}"' in by_market and f'id="order-{eth.pk}"' not in by_market
    by_status = text(trader_client.get("/orders/?status=open"))
    assert f'id="order-{eth.pk}"' in by_status and f'id="order-{ttx.pk}"' not in by_status
    invalid = trader_client.get("/orders/?status=bogus")
    assert invalid.status_code == 200 and "invalid_parameter" in text(invalid)


def test_history_is_paginated_and_only_the_callers(trader, trader_client):
    for _ in range(27):
        place(trader, side="buy", type="limit", price="100.00", quantity="0.001")
    stranger = UserFactory()
    fund(stranger, "USDT", "1000")
    foreign = place(stranger, side="buy", type="limit", price="100.00", quantity="0.001")
    first = text(trader_client.get("/orders/?status=open"))
    assert "27 orders" in first and "Page 1 of 2" in first and "status=open&amp;page=2" in first
    assert first.count('<tr id="order-') == 25
    second = text(trader_client.get("/orders/?status=open&page=2"))
    assert second.count('<tr id="order-') == 2
    assert f'id="order-{foreign.pk}"' not in first + second


def test_a_long_history_is_counted_only_as_far_as_the_page_needs(trader, trader_client, monkeypatch):
    """Django's paginator counted every order of the account on every page (1,000,000 orders:
    110-130 ms a page, on PostgreSQL, growing with the history); the count now stops one row
    past what the page asked for needs (core.pages.HistoryPaginator), and older pages are
    still reached."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.pages import HistoryPaginator

    monkeypatch.setattr(HistoryPaginator, "COUNT_MAX", 10)
    for _ in range(60):
        place(trader, side="buy", type="limit", price="100.00", quantity="0.001")
    with CaptureQueriesContext(connection) as queries:
        first = text(trader_client.get("/orders/"))
    [count] = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert "LIMIT 26" in count.upper(), count  # 25 a page, and one more: an older page follows
    assert "25+ orders" in first and "Page 1</span>" in first and "page=2" in first
    second = text(trader_client.get("/orders/?page=2"))
    assert "50+ orders" in second and second.count('<tr id="order-') == 25 and "page=3" in second
    last = text(trader_client.get("/orders/?page=3"))
    assert "60 orders" in last and "Page 3 of 3" in last and last.count('<tr id="order-') == 10
    assert 'rel="next"' not in last


def test_client_order_ids_are_shown_escaped(trader, trader_client):
    place(trader, side="buy", type="limit", price="1900.00", quantity="1", client_order_id="<script>alert(1)</script>")
    html = text(trader_client.get("/orders/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html


def test_wallet_shows_balance_available_and_locked(trader, trader_client):
    place(trader, side="buy", type="limit", price="1000.00", quantity="2")  # locks 2000 + the taker fee on it
    html = text(trader_client.get("/wallet/"))
    assert "Available" in html and "Locked" in html
    assert "10,000.00000000" in html and "2,002.40000000" in html and "7,997.60000000" in html


def test_a_new_trader_s_wallet_says_how_funds_arrive(client, trader, trader_client):
    # A new trader saw zeros and, at the ticket, "not enough available funds", with nothing
    # saying how funds come in (no deposit page: staff credit them).
    newcomer = UserFactory()
    client.force_login(newcomer)
    assert "You hold nothing yet" in text(client.get("/wallet/"))
    assert "You hold nothing yet" not in text(trader_client.get("/wallet/"))


# --- live regions --------------------------------------------------------------------------------------


def test_live_endpoint_swaps_only_what_changed(trader, trader_client, django_assert_max_num_queries):
    # A trade in the last 24 hours: the ticker reads its first one's price (the bound held
    # only for a market without any).
    buyer = UserFactory()
    fund(buyer, "USDT", "1000")
    place(trader, side="sell", type="limit", quantity="0.1", price="2000.00")
    place(buyer, side="buy", type="limit", quantity="0.1", price="2000.00", time_in_force="IOC")
    page = text(trader_client.get(TRADE))
    shown = ",".join(f"{name}:{version}" for name, version in re.findall(r'data-live="(\w+)" data-v="(\w+)"', page))
    assert {"ticker", "book", "trades", "balances", "open_orders", "fills"} <= {
        n.split(":")[0] for n in shown.split(",")
    }
    with django_assert_max_num_queries(13):
        unchanged = trader_client.get(f"{TRADE}/live", {"v": shown})
    assert unchanged.status_code == 204

    place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    changed = text(trader_client.get(f"{TRADE}/live", {"v": shown}))
    swapped = set(re.findall(r'id="live-(\w+)"[^>]*hx-swap-oob="true"', changed))
    assert swapped == {"book", "balances", "open_orders"}


def test_a_page_of_another_user_than_the_sessions_is_reloaded_not_updated(trader, trader_client, client_for):
    """Alice's tab after a logout and Bob's login in another tab swapped Bob's balances and
    orders in under Alice's name: the page says whom it was rendered for, and is reloaded."""
    page = text(trader_client.get(TRADE))
    rendered_for = re.search(r'"X-Page-User": "(\d*)"', page).group(1)
    assert rendered_for == str(trader.pk)
    assert trader_client.get(f"{TRADE}/live", headers={"X-Page-User": rendered_for}).status_code == 200
    bob = client_for(UserFactory())
    for path in (f"{TRADE}/live", "/wallet/live", "/live/markets"):
        moved_on = bob.get(path, headers={"X-Page-User": rendered_for})
        assert moved_on.status_code == 204 and moved_on["HX-Refresh"] == "true", path
        assert moved_on.content == b""
    # A session that only ended is no other user: the page stays (its ticket keeps its values).
    logged_out = Client().get(f"{TRADE}/live", headers={"X-Page-User": rendered_for})
    assert logged_out.status_code == 200 and "HX-Refresh" not in logged_out
    anonymous_page = Client().get(f"{TRADE}/live", headers={"X-Page-User": ""})
    assert anonymous_page.status_code == 200 and "HX-Refresh" not in anonymous_page


def test_anonymous_live_updates_have_no_personal_regions(client, market):
    html = text(client.get(f"{TRADE}/live"))
    assert set(re.findall(r'id="live-(\w+)"', html)) == {"ticker", "book", "trades"}


def test_pages_poll_without_eval(trader_client):
    # Only while visible, and every 15 s only while a stream socket is up: static/js/app.js holds
    # the poll back (test_browser_trading.py, tests/orders/streams/test_streams_browser.py). A [filter]
    # in hx-trigger would need eval, which the Content-Security-Policy refuses.
    for path in ["/", TRADE, "/wallet/"]:
        html = text(trader_client.get(path))
        assert 'hx-trigger="every 1.5s, visibilitychange from:document, live-refresh from:body"' in html
        assert '"allowEval": false' in html


def test_home_lists_markets_with_last_price_and_24h_change(trader, client, client_for):
    buyer = UserFactory()
    fund(buyer, "USDT", "10000")
    place(trader, side="sell", type="limit", price="2000.00", quantity="1")
    place(buyer, side="buy", type="limit", price="2000.00", quantity="1")
    html = text(client.get("/"))
    assert 'href="/trade/ETH-USDT"' in html and "2,000.00" in html and "0.00%" in html
    assert "ref</span>" in html  # TTX-USDT has not traded: reference price
    fills = text(client_for(buyer).get(TRADE))
    assert "Latest fills" in fills and "Taker" in fills


# --- flywheel and staff ----------------------------------------------------------------------------------


def test_flywheel_shows_public_figures_to_everyone(client, market):
    html = text(client.get("/flywheel/"))
    assert "Platform revenue" in html and "Backing per TTX" in html and "Trading Fees" in html
    assert "Log in</a> to see the revenue" in html
    assert "/api/flywheel/my-impact/export" not in html


def test_flywheel_shows_my_impact_and_the_csv_link_when_logged_in(trader_client):
    html = text(trader_client.get("/flywheel/"))
    assert "My impact" in html and "Silver" in html
    assert 'href="/api/flywheel/my-impact/export"' in html
    export = trader_client.get("/api/flywheel/my-impact/export")
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")


def test_flywheel_says_why_my_impact_is_missing_without_ttx(client_for):
    market_create("ETH-USDT")
    html = text(client_for(UserFactory()).get("/flywheel/"))
    assert 'title="ttx_not_configured"' in html and SENTENCES["ttx_not_configured"] in html
    assert "Platform revenue" in html


def test_staff_links_only_for_staff(trader_client, client_for, market):
    for path in ["/flywheel/", "/"]:
        html = text(trader_client.get(path))
        assert FAILURE_REPORT not in html and WORKER_STATUS not in html
    staff = client_for(StaffFactory())
    for path in ["/flywheel/", "/"]:
        html = text(staff.get(path))
        assert f'href="{FAILURE_REPORT}"' in html and f'href="{WORKER_STATUS}"' in html


# --- assets ---------------------------------------------------------------------------------------------------


def test_assets_ship_with_the_project(client, market):
    html = text(client.get(TRADE))
    for asset in ["css/app.css", "js/app.js", "vendor/htmx/htmx.min.js",
                  "vendor/lightweight-charts/lightweight-charts.standalone.production.js"]:  # fmt: skip
        assert f'src="/static/{asset}"' in html or f'href="/static/{asset}"' in html
    assert "https://" not in re.sub(r'href="https://www\.tradingview\.com/"', "", html.split("<main")[0])
    assert 'Charts by <a href="https://www.tradingview.com/"' in html
    assert client.get("/api/markets/ETH-USDT/candles?interval=1m&limit=300").status_code == 200


def test_collectstatic_with_whitenoise_manifest_storage(tmp_path, settings):
    from django.core.management import call_command

    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", "--noinput", verbosity=0)
    assert list(tmp_path.glob("css/app.*.css")) and list(tmp_path.glob("vendor/htmx/htmx.min.*.js"))


def _ticker_figure(page: str, label: str) -> Decimal:
    found = re.search(rf"<dt>{re.escape(label)}[^<]*</dt><dd[^>]*>([^<]+)</dd>", page)
    assert found, label
    return Decimal(found.group(1).replace(",", "").rstrip("%"))


def test_the_trade_pages_ticker_is_the_apis_last_24_hours(client, market, trader):
    """The page read its 24-hour figures from the hourly candles since the hour 23 hours
    ago (23 to 24 hours), other figures than GET /api/markets/{symbol}/ticker's 24."""
    seller = UserFactory()
    fund(seller, "ETH", "10")
    place(seller, side="sell", type="limit", price="1500.00", quantity="1")
    place(trader, side="buy", type="limit", price="1500.00", quantity="1")
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    # Within 24 hours (by what is left of this hour), just before the page's first candle.
    Trade.objects.update(executed_at=hour - timedelta(hours=23, microseconds=1))
    place(seller, side="sell", type="limit", price="2000.00", quantity="0.5")
    place(trader, side="buy", type="limit", price="2000.00", quantity="0.5")
    place(seller, side="sell", type="limit", price="1999.99", quantity="0.1")
    place(trader, side="buy", type="limit", price="1999.99", quantity="0.1")
    api = client.get("/api/markets/ETH-USDT/ticker").json()
    page = text(client.get("/trade/ETH-USDT/", follow=True))
    assert _ticker_figure(page, "24h low") == Decimal(api["low_24h"]) == Decimal("1500.00")
    assert _ticker_figure(page, "24h volume") == Decimal(api["volume_24h"]) == Decimal("1.6")
    assert _ticker_figure(page, "24h change") == Decimal(api["change_24h_percent"])
    place(seller, side="sell", type="limit", price="1499.99", quantity="0.1")
    place(trader, side="buy", type="limit", price="1499.99", quantity="0.1")
    # A fall too small to show: 0.00, as the API says it (it said -0.00).
    assert client.get("/api/markets/ETH-USDT/ticker").json()["change_24h_percent"] == "0.00"
    assert '<dt>24h change</dt><dd class="flat">0.00%</dd>' in text(client.get("/trade/ETH-USDT/", follow=True))
