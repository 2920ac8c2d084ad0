"""The live trade page in Debian's Chromium against the platform as `make run` starts it
(engine process, uvicorn, SQLite, the ZeroMQ relay): another trader's order appears in
the book through the socket within a second (the 1.5 s poll is paused while the socket is
up), the trader's own order is marked in the book, and a fill shows a notification with
its average price and fee, all under the pages' Content-Security-Policy. Screenshots go
to test-artifacts/."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from orders.management.commands.seed_demo import demo_password
from tests.environment import require
from tests.orders.streams.platform import Platform
from tests.pages.test_browser_csp import REPORT_VIOLATIONS

pytestmark = [pytest.mark.browser, pytest.mark.embedded]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture
def browser() -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run scripts/install-browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def _place(platform: Platform, token: str, **body: Any) -> dict[str, Any]:
    answer = requests.post(
        f"{platform.url}/api/orders",
        json={"market": "ETH-USDT", "type": "limit", **body},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_the_trade_page_lives_on_the_stream(tmp_path, browser):
    platform = Platform(tmp_path / "var", redis_url=None)
    try:
        platform.start()
        bob = platform.token("bob")
        context = browser.new_context(base_url=platform.url, viewport={"width": 1440, "height": 900})
        context.set_default_timeout(8000)
        # The page under its Content-Security-Policy: connect-src 'self' lets its socket to
        # ws:// of the same host through (CSP3), and nothing on it is refused.
        violations: list[str] = []
        context.expose_function("cspViolation", lambda text: violations.append(text))
        context.add_init_script(REPORT_VIOLATIONS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        polls: list[str] = []
        page.on("request", lambda r: polls.append(r.url) if "/live" in r.url else None)

        login = page.goto("/login?next=/trade/ETH-USDT")
        # The directives' order is the policy's dict's, which the header need not keep.
        directives = [part.strip() for part in login.headers["content-security-policy"].split(";")]
        assert "connect-src 'self'" in directives
        page.get_by_label("Username").fill("carol")
        page.get_by_label("Password").fill(demo_password())
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/trade/ETH-USDT")
        # A function, not an expression: under the page's policy (no eval) Playwright can
        # evaluate an expression once but not poll it (EvalError when it is not true at once).
        page.wait_for_function("() => window.streamLive === true")

        # While the socket is up the 1.5 s poll pauses (a 15 s one stays, for deposits) ...
        polls.clear()
        page.wait_for_timeout(3500)
        assert len(polls) <= 1, polls
        # ... so Bob's bid reaches Carol's book through the socket, within a second.
        started = time.monotonic()
        _place(platform, bob, side="buy", quantity="0.3", price="1994.50")
        page.locator(".book-side.bids .price-btn[data-price='1994.50']").wait_for(timeout=1000)
        seen_after = time.monotonic() - started
        assert seen_after < 1.0
        page.screenshot(path=str(ARTIFACTS / "streams-book-live.png"))

        # Carol's own bid is marked in the book (and only hers).
        page.locator("label[for='side-buy']").click()
        page.locator("label[for='type-limit']").click()
        page.locator("#order-price").fill("1999.50")
        page.locator("#order-quantity").fill("0.2")
        page.locator("#order-submit").click()
        own = page.locator(".book-side.bids tr.own .price-btn[data-price='1999.50']")
        own.wait_for()
        assert page.locator(".book-side tr.own").count() == 1
        assert page.locator(".book-side.bids .price-btn[data-price='1994.50']").locator("xpath=../..").get_attribute(
            "class"
        ) in (None, "")
        page.screenshot(path=str(ARTIFACTS / "streams-own-order.png"))

        # Bob sells into it: Carol's order fills and she is told at what price and fee.
        _place(platform, bob, side="sell", quantity="0.2", price="1999.50")
        notice = page.locator("[data-order-notice]")
        notice.wait_for(timeout=2000)
        text = notice.inner_text()
        carol = {"Authorization": f"Bearer {platform.token('carol')}"}
        mine = requests.get(f"{platform.url}/api/orders?status=filled", headers=carol, timeout=5).json()["results"]
        fee = format(Decimal(mine[0]["fee_paid"]).normalize(), "f")
        assert f"#{mine[0]['id']} buy 0.2 ETH-USDT filled" in text, text
        assert f"average {mine[0]['average_price']}" in text and f"fee {fee} USDT" in text, text
        page.locator(".book-side tr.own").wait_for(state="detached")
        page.screenshot(path=str(ARTIFACTS / "streams-fill-notice.png"))

        # The order history has no poll at all: a new order and its fill arrive by the socket.
        history = context.new_page()
        history.on("pageerror", lambda exc: errors.append(str(exc)))
        history.goto("/orders/")
        history.wait_for_function("() => window.streamLive === true")
        carol_token = platform.token("carol")
        ask = _place(platform, carol_token, side="sell", quantity="0.1", price="2000.50")
        row = history.locator(f"#order-{ask['id']}")
        row.wait_for(timeout=2000)
        assert "Open" in row.locator(".status").inner_text()
        _place(platform, bob, side="buy", quantity="0.1", price="2000.50")
        history.locator(f"#order-{ask['id']} .status.status-filled").wait_for(timeout=2000)
        history.locator(f"[data-order-notice='{ask['id']}']").wait_for(timeout=2000)
        history.screenshot(path=str(ARTIFACTS / "streams-history-live.png"))
        assert [e for e in errors if not e.startswith("Failed to load resource")] == []
        assert violations == []
        context.close()
    finally:
        platform.stop()
