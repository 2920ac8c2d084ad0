"""The trading pages in a real headless Chromium (Debian's /usr/bin/chromium) driven
by Playwright against pytest-django's live server: two traders in two browser
contexts place, cross, see fills on both sides, cancel, hit an error, and download
their my-impact CSV. Screenshots go to test-artifacts/."""

from __future__ import annotations

import csv
import os
import random
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts.error_text import SENTENCES
from orders.engine.requests import OrderRequest
from orders.models import Market, Order, Trade, TradeOutbox
from orders.services.orders import order_place
from revenue.models import RevenueStream
from revenue.services import post_trade_jobs_process, revenue_collect
from revenue.streams import STREAMS
from tests.environment import require
from tests.factories import PASSWORD, UserFactory, fund, market_create
from tests.live_server import live_server_quiet

HIDE_AND_COUNT_LIVE_REQUESTS = """() => {
  const seen = (window.__liveRequestsWhileHidden = []);
  const note = (url) => {
    if (String(url).includes("/live") && document.visibilityState === "hidden") seen.push(String(url));
  };
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    note(url);
    return open.call(this, method, url, ...rest);
  };
  const fetch = window.fetch;
  window.fetch = function (input, ...rest) {
    note(input instanceof Request ? input.url : input);
    return fetch.call(this, input, ...rest);
  };
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
}"""

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 8_000


# --- browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run scripts/install-browser")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API runs an event loop in this thread; the test's own ORM
        # calls (seeding, final checks) are still plain synchronous code.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()


class Trader:
    """One user in their own browser context, collecting page errors."""

    def __init__(self, browser: Any, base_url: str, username: str, *, javascript: bool = True) -> None:
        self.context = browser.new_context(
            base_url=base_url,
            viewport={"width": 1440, "height": 900},
            accept_downloads=True,
            locale="en-US",
            java_script_enabled=javascript,
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)
        self.username = username

    def _console(self, message: Any) -> None:
        # 4xx answers the pages expect (a rejected order) are logged by Chromium as resource errors;
        # this WSGI live server has no WebSocket: the pages fall back to polling (docs/streams.md).
        expected = ("Failed to load resource", "WebSocket connection to")
        if message.type == "error" and not message.text.startswith(expected):
            self.errors.append(message.text)

    def login(self) -> None:
        page = self.page
        page.goto("/login?next=/trade/ETH-USDT")
        page.get_by_label("Username").fill(self.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/trade/ETH-USDT")

    def ticket(self, *, side: str, quantity: str, price: str | None = None, order_type: str = "limit") -> None:
        page = self.page
        page.locator(f"label[for='side-{side}']").click()
        page.locator(f"label[for='type-{order_type}']").click()
        if price is not None:
            page.locator("#order-price").fill(price)
        page.locator("#order-quantity").fill(quantity)
        page.locator("#order-submit").click()


# --- data ---------------------------------------------------------------------------------------


def _seed() -> Market:
    """ETH-USDT with two hours of one-minute history, a market maker's ladder, revenue
    in several streams, and two funded traders, alice and bob."""
    for stream_id, name, description, target in STREAMS:
        RevenueStream.objects.update_or_create(
            id=stream_id, defaults={"name": name, "description": description, "target_monthly": target}
        )
    market = market_create("ETH-USDT")
    market_create("BTC-USDT", quantity_step="0.00001", min_quantity="0.00001", reference_price="60000.00")
    market_create("TTX-USDT", price_tick="0.0001", quantity_step="1", min_quantity="1", reference_price="0.5000")
    maker, taker = UserFactory(username="market-maker"), UserFactory(username="flow-trader")
    for user in (maker, taker):
        fund(user, "USDT", "2000000")
        fund(user, "ETH", "500")
    for name, ttx in (("alice", "1500"), ("bob", "150"), ("carol", "0")):
        trader = UserFactory(username=name)
        fund(trader, "USDT", "100000")
        fund(trader, "ETH", "10")
        if ttx != "0":
            fund(trader, "TTX", ttx)

    # One real trade, then its price history (candles for the chart) as earlier trades.
    order_place(
        user=maker, request=OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="0.8", price="1998.40")
    )
    order_place(user=taker, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="0.8"))
    real = Trade.objects.get()
    rng, price, now = random.Random(7), Decimal("1961.00"), timezone.now()
    history = []
    for minute in range(150, 0, -1):
        for tick in range(4):
            price = max(Decimal("1900.00"), price + Decimal(rng.randint(-420, 460)) / 100)
            quantity = Decimal(rng.randint(5, 380)) / 100
            history.append(
                Trade(
                    market=market,
                    price=price,
                    quantity=quantity,
                    quote_amount=price * quantity,
                    taker_side=rng.choice(["buy", "sell"]),
                    taker_order=real.taker_order,
                    maker_order=real.maker_order,
                    taker_user=taker,
                    maker_user=maker,
                    taker_fee=0,
                    maker_fee=0,
                    reference_price=market.reference_price,
                    executed_at=now - timedelta(minutes=minute, seconds=50 - 12 * tick),
                )
            )
    Trade.objects.bulk_create(history)

    # The maker's ladder around 2000: asks from 2001.00 up, bids from 1999.00 down.
    for level in range(12):
        size = f"{Decimal(rng.randint(20, 450)) / 100:.2f}"
        ask, bid = Decimal("2001.00") + Decimal("0.75") * level, Decimal("1999.00") - Decimal("0.75") * level
        for side, limit in (("sell", ask), ("buy", bid)):
            order_place(
                user=maker,
                request=OrderRequest(market="ETH-USDT", side=side, type="limit", quantity=size, price=f"{limit:.2f}"),
            )
    post_trade_jobs_process(job_ids=list(TradeOutbox.objects.values_list("pk", flat=True)))
    for stream, amount in (
        (1, "18250.40"),
        (2, "9120.00"),
        (3, "6400.00"),
        (5, "12875.50"),
        (6, "4410.10"),
        (8, "21000"),
    ):
        revenue_collect(stream=stream, amount=amount, description="seed", source_type="seed", source_id=f"s{stream}")
    return market


# --- the scenario -----------------------------------------------------------------------------------


def test_two_traders_trade_cancel_and_export_in_a_real_browser(chromium, live_server):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    _seed()
    ARTIFACTS.mkdir(exist_ok=True)
    alice = Trader(chromium, live_server.url, "alice")
    bob = Trader(chromium, live_server.url, "bob")
    try:
        # Alice logs in and rests a sell order: it shows in the book and in her open orders.
        alice.login()
        a = alice.page
        expect(a.locator("#chart canvas").first).to_be_visible()
        expect(a.get_by_role("link", name="TradingView", exact=True)).to_be_visible()
        expect(a.get_by_role("link", name="Charting by TradingView")).to_be_visible()  # the chart's own logo
        alice.ticket(side="sell", price="2000.50", quantity="0.5")
        expect(a.locator(".form-ok")).to_contain_text("sell limit 0.5 ETH-USDT: open.")
        expect(a.locator("#live-book .price-btn[data-price='2000.50']")).to_be_visible()
        expect(a.locator("#live-open_orders tbody tr")).to_have_count(1)
        expect(a.locator("#live-open_orders")).to_contain_text("2,000.50")

        # Bob, in a second context, takes the price from the book and crosses it.
        bob.page.goto("/login")
        bob.page.screenshot(path=str(ARTIFACTS / "login.png"))
        bob.login()
        b = bob.page
        b.locator("#live-book .price-btn[data-price='2000.50']").click()
        expect(b.locator("#order-price")).to_have_value("2000.50")
        bob.ticket(side="buy", quantity="0.5")
        # Bob holds TTX: 10% off the taker fee of 1000.25 USDT (12 bps).
        filled = "buy limit 0.5 ETH-USDT: filled at average 2000.5 USDT, fee 1.08027 USDT."
        expect(b.locator(".form-ok")).to_contain_text(filled)
        expect(b.locator("#live-fills tbody tr").first).to_contain_text("2,000.50")
        expect(b.locator("#live-fills tbody tr").first).to_contain_text("Taker")

        # Bob's tab goes to the background: his page stops polling while Alice carries on.
        # The page itself counts live requests *issued* while hidden: a poll that left just
        # before the switch, reported late to Python, must not count.
        b.evaluate(HIDE_AND_COUNT_LIVE_REQUESTS)
        hidden_at = time.monotonic()

        # Alice's page, polling, shows her side of the fill and the order gone from the book.
        expect(a.locator("#live-fills tbody tr").first).to_contain_text("2,000.50")
        expect(a.locator("#live-fills tbody tr").first).to_contain_text("Maker")
        expect(a.locator("#live-open_orders")).to_contain_text("No open orders")
        expect(a.locator("#live-book .price-btn[data-price='2000.50']")).to_have_count(0)

        # She places another order and cancels it from the open orders.
        alice.ticket(side="buy", price="1990.00", quantity="1")
        row = a.locator("#live-open_orders tbody tr", has_text="1,990.00")
        expect(row).to_have_count(1)
        row.get_by_role("button", name=re.compile(r"Cancel order \d+")).click()
        expect(a.locator("#toasts")).to_contain_text("cancelled.")
        expect(a.locator("#live-open_orders")).to_contain_text("No open orders")

        # The browser refuses an off-tick price (step attribute); the server refuses what it cannot afford.
        a.locator("#order-price").fill("2000.001")
        assert a.locator("#order-price").evaluate("input => input.validity.stepMismatch") is True
        alice.ticket(side="buy", price="2000.00", quantity="1000")
        expect(a.locator(".form-error p")).to_have_attribute("title", "insufficient_funds")
        expect(a.locator(".form-error")).to_contain_text(SENTENCES["insufficient_funds"])

        # A resting order and a market buy for the picture, then the screenshot of the trade screen.
        alice.ticket(side="buy", price="1999.50", quantity="0.75")
        expect(a.locator("#live-open_orders tbody tr")).to_have_count(1)
        alice.ticket(side="buy", order_type="market", quantity="0.2")
        expect(a.locator(".form-ok")).to_contain_text("buy market 0.2 ETH-USDT: filled at average ")
        expect(a.locator("#live-fills tbody tr")).to_have_count(2)
        a.locator("#order-quantity").fill("0.25")
        a.mouse.move(0, 0)
        a.evaluate("document.querySelectorAll('#toasts .toast').forEach(toast => toast.remove())")
        a.screenshot(path=str(ARTIFACTS / "trade.png"))
        a.screenshot(path=str(ARTIFACTS / "trade-full.png"), full_page=True)

        # Not one poll from Bob's hidden tab meanwhile (a negative check needs a window: at
        # least two poll periods); it refreshes at once when visible again.
        if time.monotonic() - hidden_at < 3.2:
            a.wait_for_timeout(int((3.2 - (time.monotonic() - hidden_at)) * 1000))
        assert b.evaluate("window.__liveRequestsWhileHidden") == []
        with b.expect_request(lambda request: "/live" in request.url):
            b.evaluate(
                "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});"
                "document.dispatchEvent(new Event('visibilitychange'))"
            )

        # Flywheel: the public figures and her impact, with the CSV download.
        a.goto("/flywheel/")
        expect(a.get_by_role("heading", name="My impact")).to_be_visible()
        with a.expect_download() as download:
            a.get_by_role("link", name="Download CSV").click()
        assert download.value.suggested_filename == "my-impact.csv"
        with open(download.value.path(), newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == ["metric", "value"]
        values = dict(rows[1:])
        assert values["username"] == "alice" and values["tier"] == "silver" and int(values["trades_30d"]) == 2
        assert Decimal(values["fees_paid_30d"]) > 0
        a.screenshot(path=str(ARTIFACTS / "flywheel.png"), full_page=True)

        # Order history with every state change, and the markets; then the trade screen on a phone.
        a.goto("/orders/")
        expect(a.locator("tbody tr")).to_have_count(4)
        a.screenshot(path=str(ARTIFACTS / "orders.png"), full_page=True)
        a.goto("/")
        a.screenshot(path=str(ARTIFACTS / "home.png"))
        a.goto("/wallet/")
        a.screenshot(path=str(ARTIFACTS / "wallet.png"))
        a.set_viewport_size({"width": 390, "height": 844})
        a.goto("/trade/ETH-USDT")
        expect(a.locator("#chart canvas").first).to_be_visible()
        a.screenshot(path=str(ARTIFACTS / "trade-mobile.png"), full_page=True)

        # Without JavaScript the order form is a plain POST, answered by a redirect and a message.
        carol = Trader(chromium, live_server.url, "carol", javascript=False)
        carol.login()
        carol.ticket(side="buy", price="1980.00", quantity="0.1")
        carol.page.wait_for_url("**/trade/ETH-USDT")
        expect(carol.page.locator(".msg-success")).to_contain_text("buy limit 0.1 ETH-USDT: open.")
        expect(carol.page.locator("#live-open_orders")).to_contain_text("1,980.00")
        carol.page.screenshot(path=str(ARTIFACTS / "trade-nojs.png"))
        carol.context.close()

        assert alice.errors == [] and bob.errors == []
    finally:
        alice.context.close()
        bob.context.close()

    with live_server_quiet():
        statuses = sorted(Order.objects.filter(user__username="alice").values_list("status", flat=True))
    assert statuses == ["cancelled", "filled", "filled", "open"]
