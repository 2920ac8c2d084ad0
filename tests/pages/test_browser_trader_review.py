"""Defects a new trader met on the pages that only a browser shows (review of the trader pages
against `make run`), each test failing before its fix. Same chromium and live server as
test_browser_layout.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accounts.error_text import SENTENCES
from orders.api.serializers import OrderOutput
from orders.models import Order, OrderStatus
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
