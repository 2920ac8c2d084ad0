"""Defects a new trader met on the pages that only a browser shows (review of the trader pages
against `make run`), each test failing before its fix. Same chromium and live server as
test_browser_layout.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from accounts.error_text import SENTENCES
from orders.api.serializers import OrderOutput
from orders.engine.requests import OrderRequest
from orders.models import Order, OrderStatus
from orders.services.orders import order_place
from tests.live_server import live_server_quiet
from tests.pages import test_browser_layout as layout
from tests.pages import test_browser_trading as trading
from tests.pages.test_browser_trading import TIMEOUT_MS, Trader

chromium = trading.chromium  # the trading browser test's browser, shared
seeded = layout.seeded

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The live server has no WebSocket: a socket of the page's own that the test speaks through, as
# the platform's /ws/v1 does (subscribe, then "subscribed", then the channels' updates).
FAKE_SOCKET = """(() => {
  window.__sockets = [];
  window.WebSocket = class {
    constructor(url) {
      this.url = url;
      window.__sockets.push(this);
      setTimeout(() => this.onopen && this.onopen(), 0);
    }
    send(text) {
      const message = JSON.parse(text);
      if (message.op === "subscribe") {
        const answer = {op: "subscribed", channels: message.channels};
        setTimeout(() => this.onmessage({data: JSON.stringify(answer)}), 0);
      }
    }
    close() {}
  };
  window.__emit = (message) => window.__sockets.forEach((s) => s.onmessage({data: JSON.stringify(message)}));
})();"""


def _order_update(order: Order, sequence: int) -> dict[str, Any]:
    """The `orders` channel's update for `order`: the API's order body, as the stream sends it."""
    data = json.loads(json.dumps(OrderOutput(order).data))
    return {"channel": "orders", "type": "update", "sequence": sequence, "data": data}


def test_the_notification_of_an_expired_order_says_why_in_a_sentence(chromium, seeded):
    """A fill-or-kill buy that found nothing to fill: the ticket said "expired (fill or kill: the
    book could not fill all of it at once, ...)", the notification the stream brought at the same
    moment "expired (fok_not_fillable): nothing filled", the code no trader is told about."""
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice")
    try:
        alice.context.add_init_script(script=FAKE_SOCKET)
        alice.login()
        page = alice.page
        page.wait_for_function("() => window.streamLive === true", timeout=TIMEOUT_MS)
        page.locator("#order-tif").select_option("FOK")
        alice.ticket(side="buy", price="1990.00", quantity="0.1")
        expect(page.locator("#order-entry .form-ok")).to_contain_text("expired")
        with live_server_quiet():
            order = Order.objects.get(user__username="alice")
            assert order.status == OrderStatus.EXPIRED and order.status_reason == "fok_not_fillable"
            update = _order_update(order, sequence=1)
        page.evaluate("(message) => window.__emit(message)", update)
        notice = page.locator(f"#toasts [data-order-notice='{order.pk}']")
        expect(notice).to_contain_text(f"buy 0.1 ETH-USDT expired ({SENTENCES['fok_not_fillable']})")
        assert "fok_not_fillable" not in notice.inner_text()
        assert alice.errors == []
    finally:
        alice.context.close()


def test_the_order_history_keeps_cancel_on_a_laptop_screen_with_a_traders_orders(chromium, seeded):
    """/orders/ at 1,280 px with what a trader has after a few orders: self-trade prevention
    choices ("GTC · expire_maker"), an average price to 8 decimals, a stop. The table was 1,410 px
    wide in a 1,238 px box: the Cancel of an open order sat past the right edge of the screen,
    reached only by scrolling the table sideways (the layout test's three plain orders fit)."""
    from playwright.sync_api import expect

    with live_server_quiet():
        users = get_user_model().objects
        alice, bob = users.get(username="alice"), users.get(username="bob")

        def order(user: Any, **fields: str) -> None:
            order_place(user=user, request=OrderRequest(market="ETH-USDT", **fields))

        order(bob, side="buy", type="limit", price="2000.01", quantity="0.1")
        order(bob, side="buy", type="limit", price="2000.02", quantity="0.2")
        order(alice, side="sell", type="limit", price="2000.00", quantity="0.3", stp="expire_maker")
        order(alice, side="sell", type="stop_loss", stop_price="1500.00", quantity="0.1", stp="expire_both")
        order(alice, side="sell", type="limit", price="2100.00", quantity="0.25", stp="expire_taker")
        assert Order.objects.get(user=alice, price="2000.00").status == OrderStatus.FILLED

    trader = Trader(chromium, seeded, "alice")
    try:
        trader.login()
        page = trader.page
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto("/orders/")
        expect(page.locator("table.orders tbody tr")).to_have_count(3)
        expect(page.locator("table.orders")).to_contain_text("2,000.01666667")
        layout._fits(page, 1280)
        wrap = page.locator("#order-history .table-wrap").bounding_box()
        assert wrap is not None
        for row in range(2):  # the open sell and the pending stop: each with its Cancel on screen
            cancel = page.locator("table.orders tbody tr").nth(row).get_by_role("button", name="Cancel order")
            box = cancel.bounding_box()
            assert box is not None and box["x"] + box["width"] <= min(1280, wrap["x"] + wrap["width"]), (box, wrap)
        page.screenshot(path=str(layout.SCREENSHOTS / "orders-1280-trader.png"), full_page=True)
        # On a phone the table scrolls in its box, and the Cancel column stays at the box's edge.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/orders/")
        wrap = page.locator("#order-history .table-wrap").bounding_box()
        cancel = page.locator("table.orders tbody tr").first.get_by_role("button", name="Cancel order")
        box = cancel.bounding_box()
        assert wrap is not None and box is not None
        assert wrap["x"] <= box["x"] and box["x"] + box["width"] <= wrap["x"] + wrap["width"], (box, wrap)
        assert trader.errors == []
    finally:
        trader.context.close()


INSET = """(selector) => {
  const element = document.querySelector(selector);
  const panel = element.closest(".panel").getBoundingClientRect();
  const box = element.getBoundingClientRect();
  return {left: box.left - panel.left, right: panel.right - box.right, top: box.top, x: box.left};
}"""


def test_the_key_and_password_forms_sit_inside_their_panels(chromium, seeded):
    """/keys/ and /account/password: the inputs ran edge to edge of their panel with no inset
    (the label's text on the panel's border), the "Allow trading" checkbox floated alone in the
    middle of the line, 600 px from its label, and the new key's secret sat under its label at the
    far right of the panel instead of beside it."""
    from playwright.sync_api import expect

    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto("/keys/")
        for selector in ("#id_label", "#id_password", "label[for='id_label']"):
            inset = page.evaluate(INSET, selector)
            assert inset["left"] >= 12 and inset["right"] >= 12, (selector, inset)
        checkbox, label = (page.evaluate(INSET, s) for s in ("#id_trade", "label[for='id_trade']"))
        assert abs(checkbox["x"] - label["x"]) <= 2, (checkbox, label)
        page.get_by_label("Label").fill("grid bot")
        page.get_by_label("Allow trading").check()
        page.get_by_label("Your password").fill(trading.PASSWORD)
        page.get_by_role("button", name="Create key").click()
        created = page.get_by_test_id("api-key-created")
        expect(created).to_contain_text("grid bot")
        assert page.evaluate(INSET, "[data-testid='api-key-created'] p strong")["left"] >= 12
        secret, term = (
            page.locator(f"[data-testid='api-key-created'] {s}").first.bounding_box() for s in ("dd code", "dt")
        )
        assert secret is not None and term is not None and abs(secret["y"] - term["y"]) < 6, (secret, term)
        page.screenshot(path=str(layout.SCREENSHOTS / "keys-1280.png"), full_page=True)
        page.goto("/account/password")
        for selector in ("#id_password", "#id_new_password", "#id_new_password_confirm"):
            inset = page.evaluate(INSET, selector)
            assert inset["left"] >= 12 and inset["right"] >= 12, (selector, inset)
        assert alice.errors == []
    finally:
        alice.context.close()


GAP_BEFORE_FEE = """(estimate) => {
  const fee = estimate.querySelector(".muted");
  let unit = fee.previousSibling;
  while (unit && !(unit.nodeType === Node.TEXT_NODE && unit.textContent.trim())) unit = unit.previousSibling;
  const range = document.createRange();
  range.selectNodeContents(unit);
  return fee.getBoundingClientRect().left - range.getBoundingClientRect().right;
}"""


def test_the_book_marks_the_traders_own_level_without_breaking_its_row(chromium, seeded):
    """BTC-USDT: the dot marking the trader's own bid at 59,985.00 took inline room in the price
    cell, the price went to a second line and the row was 35 px high among rows of 21 (the
    ladder's depth bars out of step). And the ticket's estimate read "60.07 USDT(fee up to ...)"."""
    from playwright.sync_api import expect

    with live_server_quiet():
        maker = get_user_model().objects.get(username="market-maker")
        for price in ("59990.00", "59980.00", "59970.00"):
            order_place(
                user=maker,
                request=OrderRequest(market="BTC-USDT", side="buy", type="limit", quantity="0.01", price=price),
            )
    alice = Trader(chromium, seeded, "alice")
    try:
        alice.login()
        page = alice.page
        page.goto("/trade/BTC-USDT")
        alice.ticket(side="buy", price="59985.00", quantity="0.001")
        expect(page.locator("#order-entry .form-ok")).to_contain_text("buy limit 0.001 BTC-USDT: open.")
        own = page.locator(".book-side.bids tbody tr.own")
        expect(own).to_have_count(1)
        expect(own.locator(".own-marker")).to_have_count(1)
        heights = page.evaluate(
            "() => [...document.querySelectorAll('.book-side.bids tbody tr')]"
            ".map((row) => Math.round(row.getBoundingClientRect().height))"
        )
        assert len(heights) == 4 and len(set(heights)) == 1, heights
        page.locator("#order-quantity").fill("0.001")
        expect(page.locator("#order-total")).not_to_have_text("—")
        # The room between the unit ("USDT") and "(fee up to ...)", as drawn.
        gap = page.locator(".estimate").evaluate(GAP_BEFORE_FEE)
        assert gap >= 3, gap
        assert alice.errors == []
    finally:
        alice.context.close()
