"""In chromium, what the test client cannot see of tests/pages/test_pages_new_trader_review.py:
the parts JavaScript shows."""

from __future__ import annotations

import pytest

from tests.pages import test_browser_trading as trading
from tests.pages.test_browser_trading import TIMEOUT_MS, Trader

chromium = trading.chromium  # the trading browser test's browser, shared

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded(chromium, live_server):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    trading._seed()
    return live_server.url


@pytest.mark.parametrize("javascript", [True, False])
def test_the_books_click_a_price_hint_shows_where_a_click_fills_the_ticket(chromium, seeded, javascript):
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice", javascript=javascript)
    try:
        alice.login()
        page = alice.page
        page.goto("/trade/ETH-USDT")
        hint = page.locator("#book-h + .hint")
        if javascript:
            expect(hint).to_be_visible()
            page.locator("#live-book .price-btn").first.click()
            expect(page.locator("#order-price")).not_to_have_value("")
        else:
            expect(hint).to_be_hidden()
        assert alice.errors == []
    finally:
        alice.context.close()


@pytest.mark.parametrize("javascript", [True, False])
def test_the_charts_interval_buttons_show_where_they_work(chromium, seeded, javascript):
    from playwright.sync_api import expect

    visitor = Trader(chromium, seeded, "visitor", javascript=javascript)
    try:
        page = visitor.page
        page.goto("/trade/ETH-USDT")
        group = page.locator(".intervals")
        if javascript:
            expect(group).to_be_visible()
            page.locator("[data-interval='5m']").click()
            expect(page.locator("[data-interval='5m']")).to_have_attribute("aria-pressed", "true")
        else:
            expect(group).to_be_hidden()
        assert visitor.errors == []
    finally:
        visitor.context.close()


@pytest.mark.parametrize("javascript", [True, False])
def test_the_tickets_estimate_shows_where_it_is_computed(chromium, seeded, javascript):
    """Without JavaScript the ticket read "Total incl. fee ≈ — USDT (fee up to — USDT, 12 bps)"
    whatever was typed: dashes where the script writes figures. It says the fee rate instead."""
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice", javascript=javascript)
    try:
        alice.login()
        page = alice.page
        page.goto("/trade/ETH-USDT")
        page.fill("#order-price", "2000")
        page.fill("#order-quantity", "0.5")
        estimate, rate = page.locator("#order-entry .estimate"), page.locator("#order-entry .fee-rate")
        if javascript:
            expect(estimate).to_be_visible()
            expect(page.locator("#order-total")).to_have_text("1,001.2")
            expect(rate).to_be_hidden()
        else:
            expect(estimate).to_be_hidden()
            expect(rate).to_be_visible()
            expect(rate).to_contain_text("12 bps")
        assert alice.errors == []
    finally:
        alice.context.close()
