"""The trader pages as a trader meets them, in Debian's chromium (issue 20, item 6): the
order ticket posted after the session expired, and the widths of /orders/ on a laptop
(1,280 px) and of the trade page on a phone (390 px), by DOM and screenshot (var/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.error_text import SENTENCES
from orders.models import Order
from tests.factories import PASSWORD
from tests.live_server import live_server_quiet
from tests.pages import test_browser_trading as trading
from tests.pages.test_browser_trading import TIMEOUT_MS, Trader

chromium = trading.chromium  # the trading browser test's browser, shared

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"

# Everything wider than the viewport, with its width: what makes a page scroll sideways.
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  return {
    scrollWidth: document.documentElement.scrollWidth,
    culprits: [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > width + 0.5 && !el.closest(".table-wrap, .market-tabs"))
      .slice(0, 8)
      .map((el) => `${el.tagName}#${el.id}.${el.className} ${Math.round(el.getBoundingClientRect().right)}`),
  };
}"""


def _fits(page: Any, width: int) -> dict[str, Any]:
    found = page.evaluate(OVERFLOW)
    assert found["scrollWidth"] <= width, found
    return found


def _inside(page: Any, selector: str, width: int) -> None:
    """`selector` is on screen: its left and right edges within the viewport."""
    box = page.locator(selector).first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (selector, box)


@pytest.fixture
def seeded(chromium, live_server):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    trading._seed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return live_server.url


def test_the_order_ticket_after_the_session_expired_keeps_the_values_and_says_so(chromium, seeded):
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        page.locator("label[for='side-sell']").click()
        page.locator("#order-price").fill("2150.25")
        page.locator("#order-quantity").fill("0.42")
        page.locator("#order-tif").select_option("IOC")
        # The session ends behind the page's back (expired, or a logout in another tab) ...
        alice.context.clear_cookies(name="sessionid")
        page.locator("#order-submit").click()
        error = page.locator("#order-entry .form-error")
        expect(error).to_contain_text("Your session expired, log in again")
        expect(error.locator("p")).to_have_attribute("title", "session_expired")
        expect(page.locator("#order-price")).to_have_value("2150.25")
        expect(page.locator("#order-quantity")).to_have_value("0.42")
        expect(page.locator("#side-sell")).to_be_checked()
        expect(page.locator("#order-tif")).to_have_value("IOC")
        assert page.url.endswith("/trade/ETH-USDT")  # still the trade page, not the login form
        page.screenshot(path=str(SCREENSHOTS / "session-expired.png"))

        # ... and, with every cookie gone, the CSRF check fails: the same, not Django's 403 page.
        alice.context.clear_cookies()
        page.locator("#order-quantity").fill("0.43")
        page.locator("#order-submit").click()
        expect(page.locator("#order-quantity")).to_have_value("0.43")
        expect(error).to_contain_text("Your session expired, log in again")
        expect(page.locator("body")).not_to_contain_text("CSRF verification failed")
        assert page.locator("#order-entry").count() == 1
        with live_server_quiet():
            assert not Order.objects.filter(user__username="alice", price__in=["2150.25"]).exists()

        # Logged in again in another tab, the kept ticket goes through as it is.
        other = alice.context.new_page()
        other.goto("/login?next=/wallet/")
        other.get_by_label("Username").fill("alice")
        other.get_by_label("Password").fill(PASSWORD)
        other.get_by_role("button", name="Log in").click()
        other.wait_for_url("**/wallet/")
        page.locator("#order-submit").click()
        expect(page.locator("#order-entry .form-ok")).to_contain_text("sell limit 0.43 ETH-USDT")
        assert SENTENCES["session_expired"] not in page.locator("#order-entry").inner_text()
        assert alice.errors == []
    finally:
        alice.context.close()


@pytest.mark.parametrize("width", [1280, 1400])
def test_the_order_history_fits_a_laptop_screen(chromium, seeded, width):
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        alice.ticket(side="buy", price="1999.50", quantity="0.5")
        expect(page.locator(".form-ok")).to_contain_text("buy limit 0.5 ETH-USDT: open.")
        alice.ticket(side="buy", order_type="market", quantity="0.2")
        expect(page.locator(".form-ok")).to_contain_text("filled at average ")
        page.locator("#order-tif").select_option("FOK")
        alice.ticket(side="buy", price="1990.00", quantity="0.1")
        expect(page.locator(".form-ok")).to_contain_text("expired")
        page.set_viewport_size({"width": width, "height": 900})
        page.goto("/orders/")
        expect(page.locator("tbody tr")).to_have_count(3)
        _fits(page, width)
        # The events column, the last one with content, is on screen, not cut off.
        _inside(page, "table.orders thead th:nth-child(12)", width)
        _inside(page, "table.orders tbody tr:first-child td:nth-child(12)", width)
        table = page.locator("table.orders").bounding_box()
        assert table is not None and table["x"] + table["width"] <= width
        page.screenshot(path=str(SCREENSHOTS / f"orders-{width}.png"), full_page=True)
        assert alice.errors == []
    finally:
        alice.context.close()


def test_the_trade_page_fits_a_phone(chromium, seeded):
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        alice.ticket(side="buy", price="1999.50", quantity="0.75")
        expect(page.locator(".form-ok")).to_contain_text("buy limit 0.75 ETH-USDT: open.")
        alice.ticket(side="sell", price="2100.00", quantity="0.5")
        expect(page.locator(".form-ok")).to_contain_text("sell limit 0.5 ETH-USDT: open.")
        expect(page.locator("#live-open_orders tbody tr")).to_have_count(2)
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/trade/ETH-USDT")
        expect(page.locator("#chart canvas").first).to_be_visible()
        _fits(page, 390)
        for region in ("#order-entry", "#live-book", "#live-open_orders", "#live-fills", ".market-tabs"):
            _inside(page, region, 390)
        # The open-orders table scrolls inside its own box: nothing clipped, the Cancel reachable.
        wrap = page.locator("#live-open_orders .table-wrap")
        sizes = wrap.evaluate(
            "el => ({client: el.clientWidth, scroll: el.scrollWidth, overflow: getComputedStyle(el).overflowX})"
        )
        assert sizes["overflow"] == "auto" and sizes["client"] <= 390, sizes
        cancel = page.locator("#live-open_orders tbody tr").first.get_by_role(
            "button", name="Cancel order", exact=False
        )
        cancel.scroll_into_view_if_needed()
        _inside(page, "#live-open_orders tbody tr:first-child button", 390)
        # Market tabs stay on one line, each tab on one line.
        tabs = page.locator(".market-tabs a")
        tops = {round(box["y"]) for box in (tabs.nth(i).bounding_box() for i in range(tabs.count())) if box}
        heights = {round(box["height"]) for box in (tabs.nth(i).bounding_box() for i in range(tabs.count())) if box}
        assert len(tops) == 1 and max(heights) < 30, (tops, heights)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / "trade-390.png"), full_page=True)
        assert alice.errors == []
    finally:
        alice.context.close()


def test_an_order_or_a_cancel_without_a_usable_answer_says_so(chromium, seeded, monkeypatch):
    """The engine or the database away: the ticket's and the cancel's 503 (service_unavailable)
    were never swapped in (htmx swapped no 5xx), and a 500 showed nothing either: the click
    looked ignored, the trader could not tell whether the order went."""
    from django.db import OperationalError
    from playwright.sync_api import expect

    def busy(**kwargs: Any) -> None:
        raise OperationalError("database is locked")

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("a bug")

    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        alice.ticket(side="buy", price="1990.00", quantity="0.5")
        expect(page.locator("#live-open_orders tbody tr")).to_have_count(1)
        monkeypatch.setattr("orders.services.orders.order_place", busy)
        alice.ticket(side="buy", price="1990.00", quantity="0.25")
        expect(page.locator("#order-entry .form-error")).to_contain_text(SENTENCES["service_unavailable"])
        cancel = page.locator("#live-open_orders tbody tr").first.get_by_role(
            "button", name="Cancel order", exact=False
        )
        monkeypatch.setattr("orders.views.order_cancel", busy)
        cancel.click()
        expect(page.locator("#toasts")).to_contain_text(SENTENCES["service_unavailable"])
        monkeypatch.setattr("orders.views.order_cancel", broken)
        cancel.click()
        expect(page.locator("#toasts")).to_contain_text(SENTENCES["no_answer"])
        expect(page.locator("#live-open_orders tbody tr")).to_have_count(1)
        # A proxy's own 503 page is not swapped over the ticket: the ticket stays, with the toast.
        page.evaluate("() => document.getElementById('toasts').replaceChildren()")
        page.route("**/trade/ETH-USDT/order", lambda route: route.fulfill(status=503, body="<h1>Maintenance</h1>"))
        page.locator("#order-submit").click()
        expect(page.locator("#toasts")).to_contain_text(SENTENCES["no_answer"])
        expect(page.locator("#order-entry #order-quantity")).to_have_value("0.25")
        assert page.locator("text=Maintenance").count() == 0
        # htmx logs the 5xx it did not swap; nothing else went wrong.
        assert [e for e in alice.errors if "Response Status Error Code 50" not in e] == []
    finally:
        alice.context.close()


# Every page a trader opens, logged in; the flywheel page shows "my impact" then.
PHONE_PAGES = ("/", "/trade/ETH-USDT", "/orders/", "/fills/", "/wallet/", "/keys/", "/account/password", "/flywheel/")


def test_every_page_fits_a_phone(chromium, seeded):
    """No page scrolls sideways at 390 px, logged in or not: the flywheel's tier table did
    (419 px, outside a .table-wrap)."""
    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        page.set_viewport_size({"width": 390, "height": 844})
        for path in PHONE_PAGES:
            page.goto(path)
            assert _fits(page, 390), path
        page.context.clear_cookies()
        for path in ("/", "/login", "/register", "/flywheel/"):
            page.goto(path)
            assert _fits(page, 390), path
        assert alice.errors == []
    finally:
        alice.context.close()


def test_the_ticket_sent_from_the_keyboard_keeps_the_focus_in_the_ticket(chromium, seeded):
    # Sent with its button (Tab to it, Enter), the ticket came back (refused or placed) with
    # the focus on <body>: the button was disabled while the ticket went, then replaced, and a
    # keyboard user was back at the top of the page. It stays in the ticket now.
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        focused = "() => document.activeElement && document.activeElement.id"
        page.locator("#order-price").fill("1999.50")
        page.locator("#order-quantity").fill("100000")  # more than alice can afford
        page.locator("#order-submit").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#order-entry .form-error")).to_contain_text(SENTENCES["insufficient_funds"])
        page.wait_for_function(f"() => ({focused})() === 'order-submit'")
        page.locator("#order-price").fill("")  # a limit order without its price
        page.locator("#order-quantity").fill("0.5")
        page.locator("#order-submit").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#order-price")).to_have_attribute("aria-invalid", "true")
        page.wait_for_function(f"() => ({focused})() === 'order-price'")  # the field refused
        page.keyboard.type("1999.50")
        page.locator("#order-submit").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#order-entry .form-ok")).to_contain_text("buy limit 0.5 ETH-USDT: open.")
        page.wait_for_function(f"() => ({focused})() === 'order-submit'")
        assert alice.errors == []
    finally:
        alice.context.close()


def test_a_cancel_sent_from_the_keyboard_keeps_the_focus_in_the_open_orders(chromium, seeded):
    # The row of a cancelled order goes when the open orders are refreshed, and the focus went
    # with its button, to <body>. It goes to the Cancel now in its place, then to the heading.
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        for price in ("1990.00", "1991.00"):
            alice.ticket(side="buy", price=price, quantity="0.1")
            expect(page.locator("#order-entry .form-ok")).to_contain_text("buy limit 0.1 ETH-USDT")
        rows = page.locator("#live-open_orders tbody tr")
        expect(rows).to_have_count(2)
        focused = "() => document.activeElement && document.activeElement.getAttribute('aria-label')"
        first = rows.first.locator("button")
        remaining = rows.nth(1).locator("button").get_attribute("aria-label")
        first.focus()
        page.keyboard.press("Enter")
        expect(rows).to_have_count(1)
        page.wait_for_function(f"() => ({focused})() === {remaining!r}")
        page.keyboard.press("Enter")
        expect(rows).to_have_count(0)
        page.wait_for_function("() => document.activeElement && document.activeElement.id === 'open-h'")
        assert alice.errors == []
    finally:
        alice.context.close()
