"""The pages under their Content-Security-Policy (config/settings/base.py) in Debian's
chromium: the policy is enforced (an inline script is refused, and the refusal is seen),
and the pages themselves break none of it while their scripts work (htmx's ticket, cancel
and poll, the chart's fetch, the depth and progress bars, the login form). Every violation
in any page of the browser context is reported to Python as it happens. The WebSocket
stream under the policy: tests/orders/streams/test_streams_browser.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from orders.engine.requests import OrderRequest
from orders.services.orders import order_place
from revenue.models import RevenueEvent
from revenue.services import revenue_collect
from tests.factories import PASSWORD, StaffFactory
from tests.live_server import live_server_quiet
from tests.pages import test_browser_trading as trading
from tests.pages.test_browser_trading import TIMEOUT_MS, Trader

chromium = trading.chromium  # the trading browser test's browser, shared

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  const target = event.target.outerHTML ? event.target.outerHTML.slice(0, 80) : event.target.nodeName;
  window.cspViolation(`${location.pathname}: ${event.effectiveDirective} refused ${event.blockedURI || "inline"}`
    + ` (${event.sourceFile}:${event.lineNumber}) at ${target}`);
});
"""

# Answers once the browser has refused the script (or let it run).
INLINE_SCRIPT_RUNS = """() => new Promise((resolve) => {
  const answer = () => resolve(window.inlineRan === true);
  document.addEventListener("securitypolicyviolation", answer, {once: true});
  setTimeout(answer, 2000);
  const script = document.createElement("script");
  script.textContent = "window.inlineRan = true";
  document.head.appendChild(script);
})"""


class WatchedTrader(Trader):
    """A Trader whose browser context reports every policy violation."""

    def __init__(self, browser: Any, base_url: str, username: str) -> None:
        super().__init__(browser, base_url, username)
        self.violations: list[str] = []
        self.context.expose_function("cspViolation", lambda text: self.violations.append(text))
        self.context.add_init_script(REPORT_VIOLATIONS)

    def visit(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and "script-src 'self'" in response.headers["content-security-policy"], path


@pytest.fixture
def seeded(chromium, live_server):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    trading._seed()
    return live_server.url


def test_the_policy_is_enforced_and_its_violations_seen(chromium, seeded):
    alice = WatchedTrader(chromium, seeded, "alice")
    try:
        alice.visit("/login")
        assert alice.page.evaluate(INLINE_SCRIPT_RUNS) is False
        assert any("script-src-elem refused inline" in line for line in alice.violations), alice.violations
    finally:
        alice.context.close()


def test_the_trader_pages_keep_to_the_policy_and_their_scripts_work(chromium, seeded, settings):
    from playwright.sync_api import expect

    settings.ROOT_URLCONF = "tests.core.urls_with_a_failing_endpoint"  # the pages and /failing
    alice = WatchedTrader(chromium, seeded, "alice")
    try:
        page = alice.page
        for path in ("/", "/login", "/register", "/account/password/reset", "/no-such-page"):
            alice.visit(path)
        alice.visit("/failing")  # the 500 page, its rules from app.css
        expect(page.locator("body.bare")).to_have_css("display", "grid")
        alice.login()  # the login form posts and redirects to the trade page
        expect(page.locator("#chart canvas").first).to_be_visible()  # the candles' fetch
        expect(page.locator("#tv-attr-logo")).to_have_css("position", "absolute")  # its <style>, by hash
        # The depth bars: their widths come from data-percent (a style="" would be refused).
        depth = page.locator(".book-side.asks tbody tr").first.evaluate(
            "row => getComputedStyle(row).getPropertyValue('--percent')"
        )
        assert depth.endswith("%") and float(depth[:-1]) > 0, depth
        # The ticket and the cancel through htmx; a level of the book into the ticket.
        page.locator(".book-side.bids .price-btn[data-price='1999.00']").click()
        expect(page.locator("#order-price")).to_have_value("1999.00")
        alice.ticket(side="buy", price="1990.00", quantity="0.1")
        expect(page.locator("#order-entry .form-ok")).to_contain_text("buy limit 0.1 ETH-USDT: open.")
        row = page.locator("#live-open_orders tbody tr", has_text="1,990.00")
        row.get_by_role("button", name="Cancel order", exact=False).click()
        expect(page.locator("#toasts")).to_contain_text("cancelled.")
        # The poll (its conditions in app.js now, not in hx-trigger): another's order shows.
        with live_server_quiet():
            bob = get_user_model().objects.get(username="bob")
            order = OrderRequest(market="ETH-USDT", side="buy", type="limit", quantity="0.3", price="1994.50")
            order_place(user=bob, request=order)
        expect(page.locator(".book-side.bids .price-btn[data-price='1994.50']")).to_be_visible()
        for path in ("/wallet/", "/orders/", "/keys/", "/account/password", "/trade/BTC-USDT"):
            alice.visit(path)
        with live_server_quiet():  # a fifth of the trading fees' monthly target
            revenue_collect(stream=0, amount="50000", description="test", source_type="test", source_id="csp")
        alice.visit("/flywheel/")
        bar = page.locator(".meter span[data-percent='20']")
        share = bar.evaluate("bar => bar.getBoundingClientRect().width / bar.parentElement.clientWidth")
        assert round(share, 2) == 0.2, share
        assert alice.violations == []
        assert alice.errors == []
    finally:
        alice.context.close()


ADMIN_PAGES = (
    "/admin/",
    "/admin/revenue/revenueevent/{event}/change/",
    "/admin/auth/user/",
    "/admin/auth/user/add/",
    "/admin/orders/asset/",
    "/admin/orders/asset/add/",
    "/admin/revenue/revenueevent/",
    "/admin/revenue/revenueevent/failure-report/",
    "/admin/revenue/revenueevent/worker-status/",
    "/admin/revenue/deliverybatch/",
    "/admin/revenue/revenuestream/",
    "/admin/revenue/staffaction/",
)


def test_the_admin_keeps_to_the_policy(chromium, seeded):
    from playwright.sync_api import expect

    StaffFactory(username="admin")
    staff = WatchedTrader(chromium, seeded, "admin")
    try:
        page = staff.page
        staff.visit("/admin/login/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/admin/")
        with live_server_quiet():
            event = RevenueEvent.objects.first()
        for path in ADMIN_PAGES:
            staff.visit(path.format(event=event.pk))
        staff.visit("/admin/auth/user/")
        page.locator("#action-toggle").check()  # the admin's own script (actions.js)
        expect(page.locator(".action-counter")).to_contain_text("selected")
        assert staff.violations == []
        assert staff.errors == []
    finally:
        staff.context.close()
