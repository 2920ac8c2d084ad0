"""The trader pages as a trader meets them (issue 20, item 6): an order posted after the
session expired, error codes as sentences, a house fill explained, the history's "Open"
filter and fee assets, and the time in force as the admin shows it."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client

from accounts.error_text import SENTENCES, error_sentence
from core.errors import ApplicationError
from orders.engine.types import ExpiryReason, TimeInForce
from orders.models import Order, OrderStatus
from tests.factories import StaffFactory, UserFactory, fund
from tests.orders.support import fund_house
from tests.pages.test_pages_views import HTMX, ORDER_URL, TRADE, limit_order, place, text

pytestmark = pytest.mark.django_db

EXPIRED = "Your session expired, log in again"


def value_of(page: str, name: str) -> str:
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page, re.S)
    assert match, name
    return match.group(1)


def assert_kept_ticket(response, body: dict[str, str]) -> None:
    page = text(response)
    assert response.status_code == 401
    assert EXPIRED in page and 'title="session_expired"' in page
    assert 'id="order-entry"' in page and "<html" not in page  # the ticket only, not a page
    assert "CSRF verification failed" not in page
    assert value_of(page, "quantity") == body["quantity"]
    assert value_of(page, "price") == body["price"]
    assert value_of(page, "client_order_id") == body["client_order_id"]
    assert 'id="side-sell" value="sell" checked' in page
    assert 'value="IOC" selected' in page
    assert "/login?next=/trade/ETH-USDT" in page
    assert not Order.objects.exists()


# --- the session expired -----------------------------------------------------------------


def test_an_order_posted_after_logout_keeps_the_ticket_and_says_the_session_expired(client, market):
    body = limit_order(side="sell", price="2100.50", quantity="0.75", time_in_force="IOC", client_order_id="bot-7")
    assert_kept_ticket(client.post(ORDER_URL, body, headers=HTMX), body)


def test_an_order_whose_csrf_token_no_longer_matches_keeps_the_ticket(trader):
    client = Client(enforce_csrf_checks=True)
    client.force_login(trader)
    client.get(TRADE)  # the CSRF cookie
    body = limit_order(side="sell", price="2100.50", quantity="0.75", time_in_force="IOC", client_order_id="bot-7")
    assert_kept_ticket(client.post(ORDER_URL, {**body, "csrfmiddlewaretoken": "x" * 32}, headers=HTMX), body)


def test_other_csrf_failures_keep_djangos_403(trader):
    client = Client(enforce_csrf_checks=True)
    client.force_login(trader)
    assert client.post(ORDER_URL, limit_order()).status_code == 403  # without htmx
    assert client.post("/orders/1/cancel", headers=HTMX).status_code == 403
    assert not Order.objects.exists()


def test_a_cancel_sent_with_htmx_and_a_stale_token_says_to_reload(trader):
    """A login in another tab rotates the token: the trade page's Cancel and Cancel all got a
    403 page htmx swaps nowhere (hx-swap="none"), so the click looked ignored. A toast says why."""
    order = place(trader, side="buy", type="limit", price="1900", quantity="1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(trader)
    client.get(TRADE)  # the CSRF cookie
    stale = {"csrfmiddlewaretoken": "x" * 32}
    for url in (f"/orders/{order.pk}/cancel", "/trade/ETH-USDT/cancel-all"):
        response = client.post(url, stale, headers=HTMX)
        page = text(response)
        assert response.status_code == 403, url
        assert 'hx-swap-oob="beforeend:#toasts"' in page and "<html" not in page, url
        assert "reload the page" in page and 'role="alert"' in page, url
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN


# --- error codes as sentences ---------------------------------------------------------------


def _codes(cls: type[ApplicationError]) -> set[str]:
    return {cls.code} | {code for sub in cls.__subclasses__() for code in _codes(sub)}


def test_every_error_code_and_expiry_reason_has_one_sentence():
    import accounts.api_key_auth  # noqa: F401  (every app's errors, loaded as the site loads them)
    import flywheel.errors  # noqa: F401
    import revenue.errors  # noqa: F401

    missing = (_codes(ApplicationError) - {"application_error"}) - set(SENTENCES)
    assert not missing
    assert {reason.value for reason in ExpiryReason} <= set(SENTENCES)
    assert error_sentence("insufficient_funds") == "You do not have enough available funds for this order."
    assert error_sentence("brand_new_code", "Its own message.") == "Its own message."


def test_the_ticket_shows_a_sentence_with_the_code_in_a_tooltip(trader_client):
    response = trader_client.post(ORDER_URL, limit_order(quantity="500"), headers=HTMX)
    page = text(response)
    assert response.status_code == 400
    assert f'<p title="insufficient_funds" data-code="insufficient_funds">{SENTENCES["insufficient_funds"]}' in page
    assert "<code" not in page


def test_a_wrong_login_shows_a_sentence(client, trader):
    page = text(client.post("/login", {"username": trader.username, "password": "wrong-password-1"}))
    assert 'title="invalid_credentials"' in page and "Wrong username or password." in page
    assert "<code" not in page


@pytest.mark.django_db(transaction=True)
def test_a_lockout_page_says_the_way_out(settings):
    # Under ASGI (make run, production) axes answers a locked-out /login with its own page: it
    # showed "(code: throttled)" and the seconds to wait, no link to the password reset that
    # lets the trader in at once, nor back to the login.
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    settings.LOGIN_FAILURE_LIMIT = 2
    user = UserFactory()
    post = async_to_sync(AsyncClient().post)
    for _ in range(2):
        assert post("/login", {"username": user.username, "password": "guess"}).status_code == 401
    page = post("/login", {"username": user.username, "password": "guess"})
    html = text(page)
    assert page.status_code == 429 and "Too many failed logins" in html
    assert 'title="throttled"' in html and "(code: throttled)" not in html
    assert 'href="/account/password/reset"' in html and 'href="/login"' in html


def test_a_refused_cancel_shows_a_sentence(trader, trader_client):
    order = place(trader, side="buy", type="limit", price="1900", quantity="1")
    trader_client.post(f"/orders/{order.pk}/cancel")
    response = trader_client.post(f"/orders/{order.pk}/cancel", headers={"HX-Request": "true"})
    assert response.status_code == 409
    assert SENTENCES["order_not_cancellable"] in text(response) and "order_not_cancellable:" not in text(response)


def test_the_history_says_why_an_order_expired(trader, trader_client):
    place(trader, side="buy", type="limit", price="1900", quantity="1", time_in_force="FOK")
    page = text(trader_client.get("/orders/"))
    assert f'title="fok_not_fillable">{SENTENCES["fok_not_fillable"]}<' in page


# --- a house fill explained ----------------------------------------------------------------


def test_a_market_buy_past_the_traders_own_asks_says_the_house_filled_it_and_why(trader, trader_client, market):
    fund_house(market, base="10", quote="1000")
    own_ask = place(trader, side="sell", type="limit", price="2005", quantity="1")  # below the house's 2010
    response = trader_client.post(
        ORDER_URL, {"side": "buy", "type": "market", "quantity": "0.1", "time_in_force": ""}, headers=HTMX
    )
    page = text(response)
    order = Order.objects.exclude(pk=own_ask.pk).get()
    assert order.status == OrderStatus.FILLED
    assert [t.is_house for t in order.taker_trades.all()] == [True]
    note = re.search(r"<span class=\"fill-note\" data-house-note>([^<]*)</span>", page).group(1)
    assert "from the house at 2010 USDT (reference price 0.5% above)" in note
    assert "Your own asks at a better price were skipped: self-trade prevention" in note


def test_a_house_fill_without_own_orders_in_range_does_not_blame_self_trade_prevention(trader, trader_client, market):
    fund_house(market, base="10", quote="1000")
    place(trader, side="sell", type="limit", price="2050", quantity="1")  # above the house's price
    page = text(
        trader_client.post(
            ORDER_URL, {"side": "buy", "type": "market", "quantity": "0.1", "time_in_force": ""}, headers=HTMX
        )
    )
    assert "data-house-note" in page and "from the house" in page
    assert "self-trade prevention" not in page


def test_a_book_fill_has_no_house_note(trader, trader_client, market):
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="1")
    page = text(
        trader_client.post(
            ORDER_URL, {"side": "buy", "type": "market", "quantity": "0.1", "time_in_force": ""}, headers=HTMX
        )
    )
    assert "filled" in page and "data-house-note" not in page


# --- history: the "Open" filter and fees with their asset ------------------------------------------


def test_the_open_filter_includes_partially_filled_orders(trader, trader_client):
    resting = place(trader, side="buy", type="limit", price="1900", quantity="1")
    partial = place(trader, side="buy", type="limit", price="2000", quantity="2")
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="1")
    done = place(trader, side="sell", type="limit", price="2500", quantity="1")
    trader_client.post(f"/orders/{done.pk}/cancel")
    partial.refresh_from_db()
    assert partial.status == OrderStatus.PARTIALLY_FILLED

    page = text(trader_client.get("/orders/?status=open"))
    shown = set(map(int, re.findall(r'<tr id="order-(\d+)"', page)))
    assert shown == {resting.pk, partial.pk}
    assert "Open (incl. partially filled)" in page
    only_partial = text(trader_client.get("/orders/?status=partially_filled"))
    assert set(map(int, re.findall(r'<tr id="order-(\d+)"', only_partial))) == {partial.pk}


def test_fees_show_with_their_asset_without_padding(trader, trader_client):
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="0.1")
    order = place(trader, side="buy", type="limit", price="2000", quantity="0.1")
    assert order.fee_paid == Decimal("0.24")  # 200 USDT x 12 bps, stored as 0.24000000
    cell = '<td class="num fee">0.24 <span class="muted">USDT</span></td>'
    assert cell in text(trader_client.get("/orders/"))
    assert cell in text(trader_client.get(TRADE))  # the trader's latest fills
    assert "0.24000000" not in text(trader_client.get("/orders/"))


def test_the_tickets_balances_are_exact_not_rounded(trader, trader_client):
    """After a fee, a balance has more decimals than cents: the ticket shows what can be spent,
    never rounded up to more (10,000.99712 read as 10,001.00 before)."""
    fund(trader, "USDT", "0.99712")
    fund(trader, "ETH", "0.00005")  # a deposit finer than the market's quantity step
    place(trader, side="buy", type="limit", price="1900.01", quantity="0.0003")  # 0.570003 USDT and its fee
    balances = re.search(r'(?s)<dl class="balances">.*?</dl>', text(trader_client.get(TRADE)))
    assert balances, "the ticket's balances"
    shown = re.sub(r"\s+", " ", balances.group(0))
    assert "Available USDT</dt><dd>10,000.426433 " in shown  # 10,000.99712 - 0.570687
    assert "· 0.570687 locked" in shown  # 0.570003 + 12 bps (0.5706870036), as stored
    assert "Available ETH</dt><dd>5.00005<" in shown


def test_the_ticket_states_the_fee_rate_its_total_includes(trader_client, settings):
    page = text(trader_client.get(TRADE))
    assert f'data-fee-bps="{settings.TAKER_FEE_BPS}"' in page
    assert "Total incl. fee" in page and 'id="order-fee"' in page


# --- admin -----------------------------------------------------------------------------------


def test_admin_shows_time_in_force_as_the_vocabulary(trader, market):
    place(trader, side="buy", type="limit", price="1900", quantity="1", time_in_force="GTC")
    place(trader, side="buy", type="limit", price="1900", quantity="1", time_in_force="IOC")
    admin = Client()
    admin.force_login(StaffFactory(is_superuser=True))
    page = text(admin.get("/admin/orders/order/"))
    assert ">GTC<" in page and ">IOC<" in page
    assert "Gtc" not in page and "Ioc" not in page and "Fok" not in page
    assert list(TimeInForce) == ["GTC", "IOC", "FOK"]


# --- flywheel ---------------------------------------------------------------------------------


def test_flywheel_marks_the_streams_no_feature_feeds_as_not_live(client, market):
    from revenue.models import RevenueStream
    from revenue.streams import LIVE_STREAMS, STREAMS

    for stream_id, name, description, target in STREAMS:
        RevenueStream.objects.update_or_create(
            id=stream_id, defaults={"name": name, "description": description, "target_monthly": target}
        )
    page = text(client.get("/flywheel/"))
    live = re.findall(r'<tr data-stream-live="true">\s*<th scope="row"><span class="strong">([^<]+)<', page)
    planned = re.findall(
        r'<tr class="not-live" data-stream-live="false">\s*<th scope="row"><span class="strong">([^<]+)<', page
    )
    names = {stream_id: name for stream_id, name, _, _ in STREAMS}
    assert live == [names[i] for i in sorted(LIVE_STREAMS)] == ["Trading Fees", "Market Making"]
    assert sorted(planned) == sorted(name for i, name in names.items() if i not in LIVE_STREAMS)
    assert page.count('<span class="tag">Not live</span>') == len(STREAMS) - len(LIVE_STREAMS)
    # The month's target is the live streams' (250,000 + 50,000), not all ten.
    assert "of 300,000 USD target" in page


def test_flywheel_insights_print_numbers_with_their_unit(trader, trader_client, settings):
    from orders.templatetags.page_format import amount, money_text

    fund(trader, settings.TTX_ASSET, "150")
    seller = UserFactory()
    fund(seller, "ETH", "2")
    place(seller, side="sell", type="limit", price="2000", quantity="1.5")
    place(trader, side="buy", type="limit", price="2000", quantity="1.5")
    page = text(trader_client.get("/flywheel/"))
    insights = re.search(r'<ul class="insights">(.*?)</ul>', page, re.S).group(1)
    assert re.search(r"Hold [\d,]+(\.\d{1,2})? more TTX to reach \w+: \d+% off fees", insights), insights
    assert re.search(r"Your fees of [\d,.]+ USD in 30 days sent [\d,.]+ USD to holders and [\d,.]+ USD", insights)
    # No figure with a long tail of decimals (the API keeps the exact ones).
    assert not re.search(r"\d\.\d{7,}", insights), insights
    # 3,000 USDT x 12 bps less the bronze 10%; 15% of it to holders, the rest to the reserve.
    assert "Your fees of 3.24 USD in 30 days sent 0.486 USD to holders and 2.75 USD to the reserve." in insights
    assert money_text(Decimal("0.00123456789")) == "0.001234" and money_text(Decimal("3.137238")) == "3.13"
    assert amount(Decimal("0.00120000")) == "0.0012" and amount(Decimal("1234.50")) == "1,234.5"


def test_flywheel_my_impact_holdings_and_volume_are_not_rounded_up(trader, trader_client, settings):
    """999.999 TTX is short of 1,000 (read "1,000.00" before); the volume is a USD figure
    (docs/pages.md: cents, cut, like every other figure of the panel)."""
    fund(trader, settings.TTX_ASSET, "999.999")
    seller = UserFactory()
    fund(seller, "ETH", "2")
    place(seller, side="sell", type="limit", price="2000.01", quantity="1.5")
    place(trader, side="buy", type="limit", price="2000.01", quantity="1.5")  # 3,000.015 USDT
    page = re.sub(r"\s+", " ", text(trader_client.get("/flywheel/")))
    assert "<dt>TTX holdings</dt><dd>999.999</dd>" in page
    assert '<dt>Volume, 30 days</dt><dd>3,000.01 <span class="unit">USD</span>' in page
