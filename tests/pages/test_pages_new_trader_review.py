"""Defects met on the pages as a new trader (sign up, fund, trade, history), each test
failing before its fix."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from orders.views import OPEN_ORDERS
from tests.factories import UserFactory, fund
from tests.pages.test_pages_views import TRADE, place

pytestmark = pytest.mark.django_db


def _open_rows(page: str) -> list[str]:
    return re.findall(r'<tr id="open-order-(\d+)"', page)


# --- the trade page's open orders say when they are not all listed ----------------------------


def test_the_trade_pages_open_orders_say_when_more_are_open_than_listed(trader, trader_client):
    """With more open orders than the trade page lists (50), the list ended at the 50th as if
    that were all of them: nothing said the older ones were there (Cancel all cancelled them
    too). It says so now, with a link to the market's order history."""
    orders = [place(trader, side="buy", type="limit", price="1000", quantity="0.001") for _ in range(OPEN_ORDERS + 1)]
    page = trader_client.get(TRADE).content.decode()
    rows = _open_rows(page)
    assert len(rows) == OPEN_ORDERS and str(orders[0].pk) not in rows  # the newest 50
    notice = re.search(r"<p[^>]*data-more-open-orders[^>]*>(.*?)</p>", page, re.S)
    assert notice is not None, "no word of the open orders left out"
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", notice.group(1)))
    assert f"latest {OPEN_ORDERS}" in text and "order history" in text, text
    assert 'href="/orders/?market=ETH-USDT"' in notice.group(1)


def test_the_trade_pages_open_orders_say_nothing_more_when_all_are_listed(trader, trader_client):
    for _ in range(OPEN_ORDERS):
        place(trader, side="buy", type="limit", price="1000", quantity="0.001")
    page = trader_client.get(TRADE).content.decode()
    assert len(_open_rows(page)) == OPEN_ORDERS
    assert "data-more-open-orders" not in page


# --- the markets page says where its 24h figures come from ---------------------------------------


def test_the_markets_page_says_its_24h_figures_are_the_last_24_hours_of_trades(client, market):
    """The markets' hint read "24h figures from hourly candles": they are the last 24 hours of
    trades, to the second, as GET /api/tickers reads them (orders.views._tickers); a trader
    could take them for an hour behind."""
    page = client.get("/").content.decode()
    hint = re.search(r'<h2 id="markets-h">Markets</h2><span class="hint">([^<]*)</span>', page)
    assert hint is not None
    assert "candle" not in hint.group(1) and "last 24 hours of trades" in hint.group(1), hint.group(1)


# --- the keys page says its times are UTC -----------------------------------------------------


def test_the_keys_page_says_its_times_are_utc(trader, trader_client):
    """The keys' Created and Last used read "2026-12-07 11:59" with no time zone, where every
    other page of the trader says UTC (the history, the fills, the trade page's tables)."""
    from accounts.services import api_key_create

    api_key_create(user=trader, label="grid bot", permissions=["read"])
    page = trader_client.get("/keys/").content.decode()
    head = re.search(r'<table class="data api-keys">\s*<thead>(.*?)</thead>', page, re.S).group(1)
    columns = [re.sub(r"<[^>]+>", "", th) for th in re.findall(r"<th[^>]*>(.*?)</th>", head)]
    assert "Created (UTC)" in columns and "Last used (UTC)" in columns, columns


# --- the registration says the password rules before the first try ------------------------------


def test_the_registration_says_the_password_rules_before_they_refuse_one(client, db):
    """The register page's Password field said nothing of the rules (the password change page
    does): a new trader learned them one refusal at a time ("too short", then "too common",
    then "too similar to the username")."""
    page = client.get("/register").content.decode()
    field = re.search(r'<input type="password" name="password"[^>]*>\s*<p class="help" id="([^"]+)">([^<]*)</p>', page)
    assert field is not None, "no rules under the password"
    assert f'aria-describedby="{field.group(1)}"' in field.group(0)
    rules = field.group(2)
    assert "8 characters" in rules and "common" in rules and "username" in rules, rules


# --- the book's columns say their units -----------------------------------------------------------


def test_the_books_total_column_says_its_unit(trader, trader_client):
    """The book's third column read "Total" beside "Price (USDT)" and "Size (ETH)": a running
    sum of the sizes, in ETH, which a trader reads as the level's value in USDT (0.3000 where
    0.3 ETH at 2,005 is 601.5 USDT)."""
    place(trader, side="sell", type="limit", price="2005", quantity="0.3")
    place(trader, side="buy", type="limit", price="1990", quantity="0.2")
    page = trader_client.get(TRADE).content.decode()
    book = re.search(r'<div class="book">.*?</div>', page, re.S).group(0)
    heads = re.findall(r"<thead[^>]*><tr>(.*?)</tr></thead>", book, re.S)
    assert len(heads) == 2  # asks, bids
    for head in heads:
        columns = [re.sub(r"<[^>]+>", "", th) for th in re.findall(r"<th[^>]*>(.*?)</th>", head)]
        assert columns == ["Price (USDT)", "Size (ETH)", "Total (ETH)"], columns


# --- the fills page says each total's asset ---------------------------------------------------------


def test_the_fills_page_says_the_asset_of_each_total(trader, trader_client):
    """/fills/ lists every market's fills, and its Total column said no asset: a fill on
    ETH-BTC read "0.005" beside an ETH-USDT one's "200", both bare (the fee beside them says
    its asset)."""
    from tests.factories import market_create
    from tests.pages.test_pages_fills import _row

    market_create("ETH-BTC", price_tick="0.00001", quantity_step="0.001", min_quantity="0.001", reference_price="0.05")
    seller = UserFactory()
    fund(seller, "ETH", "1")
    fund(trader, "BTC", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="0.1")
    in_usdt = place(trader, side="buy", type="limit", price="2000", quantity="0.1").taker_trades.get()
    place(seller, side="sell", type="limit", price="0.05", quantity="0.1", market="ETH-BTC")
    in_btc = place(trader, side="buy", type="limit", price="0.05", quantity="0.1", market="ETH-BTC").taker_trades.get()
    page = trader_client.get("/fills/").content.decode()
    assert '<td class="num">200 <span class="muted">USDT</span></td>' in _row(page, in_usdt.pk)
    assert '<td class="num">0.005 <span class="muted">BTC</span></td>' in _row(page, in_btc.pk)


# --- the top bar's Register and Log in come back to the page they were clicked on -----------------


def _account_links(page: str) -> dict[str, str]:
    box = re.search(r'<div class="account">(.*?)</div>', page, re.S).group(1)
    return {text: href.replace("&amp;", "&") for href, text in re.findall(r'<a [^>]*href="([^"]+)">([^<]+)</a>', box)}


def test_the_top_bars_register_link_comes_back_to_the_page(client, market):
    """The top bar's Log in came back to the page it was clicked on, its Register did not: a
    visitor of the trade page who registered there landed on the markets."""
    links = _account_links(client.get(TRADE).content.decode())
    assert links == {"Log in": f"/login?next={TRADE}", "Register": f"/register?next={TRADE}"}
    body = {"username": "newbie", "password": "Correct-Horse-9", "password_confirm": "Correct-Horse-9"}
    response = client.post(links["Register"], body)
    assert response.status_code == 302 and response["Location"] == TRADE


@pytest.mark.parametrize("path", ["/login", "/register"])
def test_the_top_bar_on_the_login_and_register_pages_sends_nowhere_back_to_them(client, db, path):
    """On the register page, the top bar's Log in read /login?next=/register: once logged in,
    the trader was sent to a registration form."""
    links = _account_links(client.get(path).content.decode())
    assert links == {"Log in": "/login", "Register": "/register"}, links


# --- the book's "Click a price to use it" only where a click does ---------------------------------


def test_the_books_click_a_price_hint_is_not_offered_without_a_ticket_or_javascript(client, trader_client):
    """The book's head said "Click a price to use it" to a visitor who has no ticket and, without
    JavaScript, to everyone: the click does nothing then. Shown by JavaScript for a trader only
    (tests/pages/test_browser_new_trader_review.py: it shows in the browser)."""
    assert "Click a price to use it" not in client.get(TRADE).content.decode()
    page = trader_client.get(TRADE).content.decode()
    hint = re.search(r'<h2 id="book-h">Order book</h2>(<span[^>]*>)Click a price to use it</span>', page)
    assert hint is not None and " hidden" in hint.group(1) and "data-needs-js" in hint.group(1), hint


def test_the_markets_page_names_fok_as_the_ticket_does(client, market):
    """The markets page's feature read "Kill-or-fill, for real" under a lede and beside a ticket
    saying "fill-or-kill" / "FOK · fill or kill": one order type under two names, the first no
    name the trader finds anywhere else."""
    page = client.get("/").content.decode().lower()
    assert "kill-or-fill" not in page and "fill-or-kill, for real" in page


# --- the flywheel's meters stay within their range -----------------------------------------------


def test_a_stream_past_its_monthly_target_keeps_its_meter_within_range(client, market):
    """A stream that collected 250 % of its monthly target had a meter with aria-valuenow 250.00
    and aria-valuemax 100: a value outside its range, which assistive technology clamps or
    drops. The value is held to 100 and the text says the real figure."""
    from revenue.models import RevenueStream
    from revenue.services import revenue_collect

    revenue_collect(stream=0, amount="250", description="fees", source_type="t", source_id="meter-1")
    RevenueStream.objects.filter(pk=0).update(target_monthly=100)
    page = client.get("/flywheel/").content.decode()
    meter = re.search(r'<div class="meter" role="meter"([^>]*)>', page).group(1)
    attrs = dict(re.findall(r'(aria-[\w]+)="([^"]*)"', meter))
    assert attrs["aria-valuemin"] == "0" and attrs["aria-valuemax"] == "100"
    assert Decimal(attrs["aria-valuenow"]) == 100, attrs
    assert attrs["aria-valuetext"] == "250.00% of the monthly target", attrs


def test_the_registration_says_what_the_optional_email_is_for(client, db):
    """Email was "(optional)" with nothing more: a trader who left it out could never reset a
    forgotten password (the reset link goes to the account's address only), and learned it
    when they needed one."""
    page = client.get("/register").content.decode()
    field = re.search(r'<input type="email" name="email"[^>]*>\s*<p class="help" id="([^"]+)">([^<]*)</p>', page)
    assert field is not None, "nothing said under the email"
    assert f'aria-describedby="{field.group(1)}"' in field.group(0)
    assert "forgotten password" in field.group(2), field.group(2)


# --- the trade page's recent trades say the day of a trade not from today ------------------------


def test_recent_trades_of_another_day_say_their_day(trader, trader_client):
    """Recent trades showed the time only ("14:00:00"): on a quiet market a trade of two days
    ago read as one of today. A trade of another day (UTC) now says its day; today's, the time."""
    from datetime import UTC, timedelta

    from django.utils import timezone

    from orders.models import Trade

    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="0.2")
    old = place(trader, side="buy", type="limit", price="2000", quantity="0.1").taker_trades.get()
    new = place(trader, side="buy", type="limit", price="2000", quantity="0.1").taker_trades.get()
    moment = timezone.now() - timedelta(days=2)
    Trade.objects.filter(pk=old.pk).update(executed_at=moment)
    new.refresh_from_db()
    page = trader_client.get(TRADE).content.decode()
    table = re.search(r'<table class="data compact trades">.*?</table>', page, re.S).group(0)
    shown = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<time [^>]*>(.*?)</time>", table)]
    assert shown == [
        new.executed_at.astimezone(UTC).strftime("%H:%M:%S"),
        moment.astimezone(UTC).strftime("%m-%d %H:%M:%S"),
    ], shown


def test_the_charts_interval_buttons_are_not_offered_without_javascript(client):
    """Without JavaScript the chart says it needs it, and its 1m ... 1d buttons were still
    there, "1m" pressed, doing nothing when clicked (a screen reader announced dead toggles).
    The script shows them (tests/pages/test_browser_new_trader_review.py)."""
    from tests.factories import market_create

    market_create("ETH-USDT")
    page = client.get(TRADE).content.decode()
    group = re.search(r'<div class="intervals"[^>]*>', page).group(0)
    assert " hidden" in group and "data-needs-js" in group, group
