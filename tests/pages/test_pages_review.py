"""Defects found reviewing the pages from outside (a new user, a trader, an operator),
each test failing before its fix."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client

from accounts.services import api_key_create
from orders.models import Order, OrderStatus
from tests.factories import UserFactory, fund
from tests.pages.test_pages_views import HTMX, ORDER_URL, place, text

pytestmark = pytest.mark.django_db


def summary_of(response) -> str:
    match = re.search(r'<p class="form-ok[^"]*" role="status">(.*?)</p>', text(response), re.S)
    assert match, "the placed order's summary"
    return re.sub(r"<[^>]+>", "", match.group(1))


def ticket_summary(client, body: dict[str, str], *, htmx: bool) -> str:
    """What the ticket says of the order it placed: in the htmx answer, or without
    JavaScript in the message shown after the redirect."""
    if htmx:
        return summary_of(client.post(ORDER_URL, body, headers=HTMX))
    response = client.post(ORDER_URL, body, follow=True)
    return " ".join(str(m) for m in response.context["messages"])


# --- the ticket's summary of an order that filled in part ------------------------------------


@pytest.mark.parametrize("htmx", [True, False])
def test_an_order_that_expired_after_a_partial_fill_says_how_much_filled(trader, trader_client, htmx):
    """An IOC buy of 1 ETH against 0.4 on offer bought 0.4 ETH and expired the rest: the
    ticket said only "expired (immediate or cancel: …)", as if nothing had been bought."""
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="0.3")
    place(seller, side="sell", type="limit", price="2001", quantity="0.1")
    body = {"side": "buy", "type": "limit", "price": "2001", "quantity": "1", "time_in_force": "IOC"}
    summary = ticket_summary(trader_client, body, htmx=htmx)
    order = Order.objects.get(user=trader)
    assert order.status == OrderStatus.EXPIRED and order.filled_quantity == Decimal("0.4")
    assert "expired (immediate or cancel" in summary
    # 0.3 x 2000 + 0.1 x 2001 = 800.1 for 0.4: 2000.25
    assert "0.4 of 1 filled at average 2000.25 USDT" in summary, summary


def test_a_partially_filled_resting_order_says_how_much_filled(trader, trader_client):
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="0.25")
    body = {"side": "buy", "type": "limit", "price": "2000", "quantity": "1", "time_in_force": "GTC"}
    summary = summary_of(trader_client.post(ORDER_URL, body, headers=HTMX))
    assert "partially filled" in summary and "0.25 of 1 filled at average 2000 USDT" in summary, summary


def test_a_fully_filled_or_resting_order_keeps_its_short_summary(trader, trader_client):
    body = {"side": "buy", "type": "limit", "price": "1900", "quantity": "1", "time_in_force": "GTC"}
    summary = summary_of(trader_client.post(ORDER_URL, body, headers=HTMX))
    assert summary.strip().endswith("ETH-USDT: open.") and "filled at average" not in summary


# --- the flywheel's public figures ---------------------------------------------------------------


def test_flywheel_public_figures_are_cut_like_the_rest_of_the_page_never_rounded_up(client, market):
    """0.666 USD of fees: 0.0999 to holders, 0.5661 to the reserve. The public figures read
    0.67 / 0.10 / 0.57 (rounded half up, more than was collected) while "my impact" next to
    them shows 0.0999 (docs/pages.md: cents from 1 up, up to 6 decimals below, never rounded up)."""
    from revenue.services import revenue_collect

    revenue_collect(stream=0, amount="0.666", description="fees", source_type="t", source_id="review-1")
    page = re.sub(r"\s+", " ", text(client.get("/flywheel/")))
    stats = re.search(r'<section class="stats".*?</section>', page).group(0)
    values = re.findall(r'<p class="stat-value[^"]*">([^<]*) <span class="unit">USD', stats)
    assert values[:3] == ["0.666", "0.0999", "0.5661"], values
    row = re.search(r'<tr data-stream-live="true">.*?</tr>', page).group(0)
    assert '<td class="num">0.666</td>' in row, row
    assert "0.666 / 250,000" in row, row
    assert "0.67" not in stats + row and "0.10" not in stats + row


def test_flywheel_split_figures_add_up_to_the_fees_they_split(trader, trader_client, settings):
    """112.023306 USD of revenue splits 16.8034959 / 95.2198101: cut to cents the page read
    "112.02" next to "16.80" and "95.21" (112.01). The split's three figures are exact, as
    the API's, on the public panel and in "my impact"."""
    from revenue.services import revenue_collect

    revenue_collect(stream=0, amount="112.023306", description="fees", source_type="t", source_id="review-2")
    fund(trader, settings.TTX_ASSET, "1")
    seller = UserFactory()
    fund(seller, "ETH", "2")
    place(seller, side="sell", type="limit", price="2000.01", quantity="1.5")
    place(trader, side="buy", type="limit", price="2000.01", quantity="1.5")
    page = re.sub(r"\s+", " ", text(trader_client.get("/flywheel/")))
    stats = re.search(r'<section class="stats".*?</section>', page).group(0)
    revenue, holders, reserve = (
        Decimal(v.replace(",", "")) for v in re.findall(r'<p class="stat-value[^"]*">([^<]*) <span', stats)[:3]
    )
    assert (revenue, holders, reserve) == (Decimal("112.023306"), Decimal("16.8034959"), Decimal("95.2198101"))

    def figure(label: str) -> Decimal:
        found = re.search(rf"<dt>{label}</dt><dd[^>]*>([^<]*) <span", page)
        assert found, label
        return Decimal(found.group(1).replace(",", ""))

    fees = figure("Fees paid, 30 days")
    assert fees > 0 and figure("Sent to holders") + figure("Sent to reserve") == fees, page


# --- the admin desk: what a staff user without permissions sees ------------------------------------

FAILURE_REPORT = "/admin/revenue/revenueevent/failure-report/"
WORKER_STATUS = "/admin/revenue/revenueevent/worker-status/"


def _staff(*codenames: str):
    from django.contrib.auth.models import Permission

    from tests.factories import StaffFactory

    user = StaffFactory(is_superuser=False)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_the_failure_report_and_worker_status_need_the_permission_to_view_revenue_events(market):
    """A staff account with no permission on revenue events got 403 on their list and on each
    event, but read the same events (ids, amounts, errors) on the failure report, and the worker
    status, and the top bar linked both."""
    from revenue.services import revenue_collect

    revenue_collect(stream=0, amount="5", description="fees", source_type="t", source_id="review-2")
    outsider = _staff()
    assert outsider.get("/admin/revenue/revenueevent/").status_code == 403
    assert outsider.get(FAILURE_REPORT).status_code == 403
    assert outsider.get(WORKER_STATUS).status_code == 403
    for path in ["/", "/flywheel/"]:
        page = text(outsider.get(path))
        assert FAILURE_REPORT not in page and WORKER_STATUS not in page, path

    viewer = _staff("view_revenueevent")
    assert viewer.get(FAILURE_REPORT).status_code == 200
    assert viewer.get(WORKER_STATUS).status_code == 200
    for path in ["/", "/flywheel/"]:
        page = text(viewer.get(path))
        assert f'href="{FAILURE_REPORT}"' in page and f'href="{WORKER_STATUS}"' in page, path


def test_the_flywheels_staff_panel_links_the_worker_status_page_not_the_apis_json(market):
    """docs/pages.md: the "Staff" panel of the flywheel links the admin's worker status page;
    it linked the staff API's raw JSON (/api/admin/revenue/onchain-worker-status)."""
    page = re.sub(r"\s+", " ", text(_staff("view_revenueevent").get("/flywheel/")))
    panel = re.search(r'<section class="panel" aria-labelledby="staff-h">.*?</section>', page).group(0)
    assert f'href="{WORKER_STATUS}"' in panel and f'href="{FAILURE_REPORT}"' in panel, panel
    assert "/api/admin/" not in panel


# --- the order history's average price -------------------------------------------------------------


def test_the_historys_average_price_is_exact_not_rounded_to_the_tick(trader, trader_client):
    """0.1 at 2000 and 0.2 at 2001: 600.2 USDT for 0.3 ETH, 2000.666666… on average. The history
    printed 2,000.67 (rounded half up to the tick), while the API and the fill notification give
    the average to 8 decimals (orders.selectors.orders.order_average_price: 2000.66666667)."""
    seller = UserFactory()
    fund(seller, "ETH", "1")
    place(seller, side="sell", type="limit", price="2000", quantity="0.1")
    place(seller, side="sell", type="limit", price="2001", quantity="0.2")
    order = place(trader, side="buy", type="limit", price="2001", quantity="0.3")
    assert order.status == OrderStatus.FILLED
    row = re.search(rf'<tr id="order-{order.pk}">.*?</tr>', text(trader_client.get("/orders/")), re.S).group(0)
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert "2,000.66666667" in cells, cells
    assert "2,000.67" not in cells


def test_the_order_address_opened_as_a_page_goes_to_the_trade_screen(trader, trader_client, client, market):
    """Without JavaScript a refused order re-renders the screen at /trade/ETH-USDT/order; that
    address opened again (Enter in the address bar, a new tab, history) answered an empty
    405 page. It now goes to the trade screen, and places nothing."""
    refused = trader_client.post(ORDER_URL, {"side": "buy", "type": "limit", "quantity": "abc", "price": "1"})
    assert refused.status_code == 400
    for who in (trader_client, client):
        answer = who.get(ORDER_URL)
        assert (answer.status_code, answer["Location"]) == (302, "/trade/ETH-USDT")
    assert client.get("/trade/NOPE/order").status_code == 404
    assert not Order.objects.exists()


def test_the_history_filters_by_a_market_that_no_longer_takes_orders(trader, trader_client, market):
    """The market filter offered active markets only: a trader whose orders are in a market
    staff deactivated got "The filter was not understood ... Showing all orders" for it
    (GET /api/orders?market= filters by it)."""
    place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    market.is_active = False
    market.save(update_fields=["is_active"])
    page = text(trader_client.get("/orders/?market=ETH-USDT"))
    assert "not understood" not in page
    assert '<option value="ETH-USDT" selected>' in page
    assert "1 order" in page


def test_the_trade_page_of_a_halted_market_says_so_and_its_orders_can_still_be_cancelled(trader, trader_client, market):
    """A market staff deactivated showed its ticket as if it took orders: the trader learnt
    it was halted only from the refusal of an order typed in full. The ticket now says so
    (its button disabled), and the trader's resting order there is still cancelled."""
    order = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    assert "is halted" not in text(trader_client.get("/trade/ETH-USDT"))
    market.is_active = False
    market.save(update_fields=["is_active"])
    page = text(trader_client.get("/trade/ETH-USDT"))
    assert "Trading in ETH-USDT is halted" in page
    assert re.search(r'id="order-submit"[^>]*disabled', page)
    refused = trader_client.post(ORDER_URL, {"side": "buy", "type": "limit", "quantity": "1", "price": "1900.00"})
    assert refused.status_code == 400
    assert 'data-code="market_inactive"' in text(refused) and "Trading in ETH-USDT is halted" in text(refused)
    cancelled = trader_client.post(f"/orders/{order.pk}/cancel")
    assert cancelled.status_code in (200, 302), cancelled.status_code
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert Order.objects.count() == 1


@pytest.mark.parametrize("path", ["/logout", "/login", "/keys/", ORDER_URL])
def test_a_refused_csrf_token_shows_a_page_of_the_site_with_debug_off(trader, settings, path):
    """A trader who logged in in another tab (the token rotates) and then pressed "Log out" or
    "Place order" without JavaScript here got Django's bare "Forbidden (403)" page, outside
    the site. It is the site's page now, saying what to do; the status stays 403."""
    settings.DEBUG = False
    client = Client(enforce_csrf_checks=True)
    client.force_login(trader)
    client.get("/trade/ETH-USDT")  # the CSRF cookie
    answer = client.post(path, {"csrfmiddlewaretoken": "x" * 32, "username": "u", "password": "p"})
    page = text(answer)
    assert answer.status_code == 403
    assert 'class="topbar"' in page and "<h1" in page and "css/app.css" in page
    assert "reload the page" in page.lower()
    assert "Traceback" not in page


@pytest.mark.parametrize("htmx", [False, True])
def test_the_same_ticket_sent_twice_places_one_order(trader, trader_client, market, htmx):
    """Without JavaScript nothing stops a double click (or a resent form): the same ticket
    posted twice placed two orders. Each rendered ticket carries a one-time id: a second
    post of it places nothing and says so (409); the ticket after a placed or refused order
    can be sent again."""
    headers = HTMX if htmx else {}
    page = text(trader_client.get("/trade/ETH-USDT"))
    ticket = re.search(r'name="ticket" value="([^"]+)"', page)
    assert ticket is not None
    body = {"side": "buy", "type": "limit", "quantity": "0.1", "price": "1900.00", "ticket": ticket.group(1)}
    first = trader_client.post(ORDER_URL, body, headers=headers)
    again = trader_client.post(ORDER_URL, body, headers=headers)
    assert first.status_code == (200 if htmx else 302)
    assert again.status_code == 409 and "order_form_resent" in text(again)
    assert Order.objects.count() == 1
    # A refused post leaves its ticket usable once the input is fixed.
    refused = {**body, "ticket": f"t-refused-{htmx}-{trader.pk}", "quantity": "5000"}
    assert trader_client.post(ORDER_URL, refused, headers=headers).status_code == 400
    assert trader_client.post(ORDER_URL, {**refused, "quantity": "0.2"}, headers=headers).status_code in (200, 302)
    assert Order.objects.count() == 2
    if htmx:  # the ticket swapped in after a placed order has a new id
        fresh = re.search(r'name="ticket" value="([^"]+)"', text(first))
        assert fresh is not None and fresh.group(1) != ticket.group(1)


# --- the ticket for a screen reader ---------------------------------------------------------------


def test_the_tickets_amount_fields_name_their_asset_to_a_screen_reader(trader_client):
    # The units beside the inputs are aria-hidden: "Price", "Stop price" and "Amount" were
    # read without USDT or ETH. Each label says it.
    html = text(trader_client.get("/trade/ETH-USDT"))
    for field, asset in (("order-price", "USDT"), ("order-stop-price", "USDT"), ("order-quantity", "ETH")):
        label = re.search(rf'<label for="{field}">(.*?)</label>', html, re.S).group(1)
        assert f'<span class="sr-only">in {asset}</span>' in label, field


@pytest.mark.parametrize(
    ("field", "value", "described"),
    [("side", "hold", "fieldset"), ("type", "iceberg", "fieldset"), ("stp", "never", "select")],
)
def test_the_tickets_refused_choices_are_linked_to_their_messages(trader_client, field, value, described):
    # The messages of a refused side, order type or self-trade prevention were shown, but
    # linked to nothing (the other fields' messages are, with aria-describedby).
    body = {"side": "buy", "type": "limit", "price": "1900.00", "quantity": "1", field: value}
    html = text(trader_client.post(ORDER_URL, body, headers=HTMX))
    error_id = f"order-{field}-error"
    assert re.search(rf'<p class="field-error" id="{error_id}">', html), html
    assert re.search(rf'<{described}[^>]*aria-describedby="{error_id}"', html)


# --- two tabs, two accounts -----------------------------------------------------------------------


def _ticket_fields(html: str) -> dict[str, str]:
    form = re.search(r'<form id="order-entry".*?</form>', html, re.S).group(0)
    return dict(re.findall(r'<input type="hidden" name="(ticket|account)" value="([^"]*)"', form))


def test_a_ticket_opened_as_one_trader_places_nothing_for_another_logged_in_since(trader, market):
    # Alice's trade tab; in another tab she logs out and bob logs in. The ticket of her tab,
    # still headed "alice", sent with htmx (which sends the current CSRF cookie) placed the
    # order on bob's account (seen in chromium: "Order #79 buy limit 0.01 ETH-USDT: open."
    # in alice's tab, the order bob's). It is refused now, nothing placed, until reloaded.
    browser = Client()
    browser.force_login(trader)
    hidden = _ticket_fields(text(browser.get("/trade/ETH-USDT")))
    assert hidden["account"] == str(trader.pk)
    bob = UserFactory()
    fund(bob, "USDT", "10000")
    browser.force_login(bob)  # the other tab's login, same browser
    body = {"side": "buy", "type": "limit", "price": "1900.00", "quantity": "1", **hidden}
    for headers in (HTMX, {}):
        response = browser.post(ORDER_URL, body, headers=headers)
        assert response.status_code == 409
        assert 'data-code="order_form_other_account"' in text(response)
        assert _ticket_fields(text(response))["account"] == str(trader.pk)  # refused until reloaded
    assert not Order.objects.exists()
    reloaded = _ticket_fields(text(browser.get("/trade/ETH-USDT")))
    assert reloaded["account"] == str(bob.pk)
    response = browser.post(ORDER_URL, {**body, **reloaded}, headers=HTMX)
    assert response.status_code == 200 and Order.objects.get().user == bob
    assert _ticket_fields(text(response))["account"] == str(bob.pk)  # the next ticket is bob's too


# --- a form posted after the session expired, without JavaScript -----------------------------------


def test_a_cancel_posted_after_the_session_expired_logs_in_back_to_the_page_it_was_on(trader, market):
    # The login's next was the cancel's own address: once logged in, the browser opened
    # /orders/<id>/cancel as a page and got an empty 405. It is the page the form was on.
    order = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    browser = Client()
    response = browser.post(f"/orders/{order.pk}/cancel", {"next": "/orders/?status=open"})
    assert response.status_code == 302
    assert response["Location"] == "/login?next=/orders/%3Fstatus%3Dopen"
    browser.force_login(trader)
    assert browser.get("/orders/?status=open").status_code == 200
    assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN  # nothing was cancelled meanwhile


def test_a_form_address_opened_after_the_login_is_its_page_not_an_empty_405(trader, market):
    # The expired form's 403 page is shown at the form's address (/logout, a cancel, a key's
    # delete); its "Log in" sends back there, and the browser then opened it as a page: an
    # empty 405. Opened as a page it is the page the form was on, and nothing is done.
    order = place(trader, side="buy", type="limit", price="1900.00", quantity="1")
    browser = Client(enforce_csrf_checks=True)
    browser.get("/trade/ETH-USDT")
    expired = browser.post("/logout", {"csrfmiddlewaretoken": "x" * 32})
    assert expired.status_code == 403 and "/login?next=/logout" in text(expired)
    browser.force_login(trader)
    for address, page in (
        ("/logout", "/"),
        (f"/orders/{order.pk}/cancel", "/orders/"),
        ("/trade/ETH-USDT/cancel-all", "/trade/ETH-USDT"),
        ("/keys/1/delete", "/keys/"),
    ):
        for method in (browser.get, browser.head):
            response = method(address)
            assert response.status_code == 302 and response["Location"] == page, address
    assert "_auth_user_id" in browser.session  # still logged in
    assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN


@pytest.mark.parametrize(
    ("body", "referer", "back"),
    [
        ({"next": "/keys/"}, None, "/keys/"),  # the delete form's own next
        ({}, "http://testserver/keys/", "/keys/"),  # a form without one: where it was posted from
        ({}, "https://evil.example/keys/", "/keys/1/delete"),  # another site's page: as before
    ],
)
def test_a_key_deleted_after_the_session_expired_logs_in_back_to_the_page_it_was_on(db, body, referer, back):
    headers = {"Referer": referer} if referer else {}
    response = Client().post("/keys/1/delete", body, headers=headers)
    assert response.status_code == 302 and response["Location"] == f"/login?next={back}"


def test_a_key_is_deleted_in_two_steps(trader, trader_client):
    """One click on "Delete" removed a key at once, its bots refused from then on: the form is
    behind a disclosure that says so (no JavaScript needed)."""
    api_key_create(user=trader, label="bot", permissions=["read"])
    html = text(trader_client.get("/keys/"))
    confirm = re.search(r'<details class="confirm">.*?</details>', html, re.S)
    assert confirm is not None, "the delete form is not behind a confirmation"
    assert re.search(r"<summary[^>]*>Delete…</summary>", confirm.group(0))
    form = re.search(r'<form method="post" action="/keys/\d+/delete".*?</form>', confirm.group(0), re.S)
    assert form is not None and "Delete key “bot”" in form.group(0) and "refused" in form.group(0)


def test_the_key_delete_form_says_where_it_was(trader, trader_client):
    api_key_create(user=trader, label="bot", permissions=["read"])
    html = text(trader_client.get("/keys/"))
    form = re.search(r'<form method="post" action="/keys/\d+/delete".*?</form>', html, re.S).group(0)
    assert '<input type="hidden" name="next" value="/keys/">' in form


# --- HEAD -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/login", "/register", "/trade/", "/trade/ETH-USDT", "/orders/", "/wallet/", "/flywheel/", "/keys/",
     "/live/markets", "/trade/ETH-USDT/live", "/wallet/live", "/account/password", "/account/password/reset",
     "/account/password/reset/sent"],
)  # fmt: skip
def test_every_page_answers_head_as_it_answers_get(trader_client, path):
    # Every page answered HEAD with 405 (require_GET), the home page too: an uptime check or a
    # link checker sending HEAD saw the site refuse its pages (RFC 9110: GET and HEAD go together).
    get, head = trader_client.get(path), trader_client.head(path)
    assert head.status_code == get.status_code, (path, head.status_code, get.status_code)
    assert head.content == b""
    assert Client().head(path).status_code == Client().get(path).status_code
