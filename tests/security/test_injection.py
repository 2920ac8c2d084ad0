"""Hostile input: SQL and HTML/JS payloads in every field that is stored and shown again and
in every query parameter. The API answers a 4xx validation error or stores the value
verbatim (never a 5xx; nothing executed: the tables are still there and the row counts
move only as expected); pages that show a stored value render it escaped; the Django
admin's search and filters take the payloads without a 5xx."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django.utils.html import escape

from orders.api.markets import SYMBOL_FILTER_PATTERN
from orders.models import Order, Trade
from revenue.delivery.metadata import DeliveryMetadata, DeliveryStatus, patch_failed, patch_tx_hash
from revenue.jsonb import JsonMerge
from revenue.models import RevenueEvent
from tests.factories import PASSWORD
from tests.security.conftest import World, api_client, failed_event, page_client

pytestmark = pytest.mark.django_db

SQL = [
    "' OR 1=1 --",
    "1; DROP TABLE orders_order; --",
    "%' UNION SELECT username, password FROM auth_user --",
    "ETH-USDT' OR '1'='1",
    '") OR ("1"="1',
]
HTML = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg/onload=alert(1)>",
]
PAYLOADS = SQL + HTML
TABLES = {"orders_order", "orders_trade", "orders_wallet", "auth_user", "revenue_revenueevent"}


def _snapshot() -> tuple[int, int, int]:
    return Order.objects.count(), Trade.objects.count(), get_user_model().objects.count()


def _intact(before: tuple[int, int, int], *, orders_added: int = 0, users_added: int = 0) -> None:
    assert set(connection.introspection.table_names()) >= TABLES
    orders, trades, users = before
    assert _snapshot() == (orders + orders_added, trades, users + users_added)


def _error(response: Any, status: int, *codes: str) -> None:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response.json()["error"]["code"] in codes, response.json()


def _shown_escaped(html: str, payload: str) -> None:
    assert payload not in html, f"raw payload in page: {payload!r}"
    assert escape(payload) in html, f"escaped payload missing: {escape(payload)!r}"


def _not_found(payload: str, code: str) -> tuple[str, ...]:
    # A payload with "/" does not even match the route: the resolver's 404 (`not_found`).
    return (code, "not_found") if "/" in payload else (code,)


def _absent(html: str, payload: str) -> None:
    if any(c in payload for c in "<>\"'"):
        assert payload not in html, f"raw payload in page: {payload!r}"


# --- API: stored values ------------------------------------------------------------------------------


def test_register_rejects_payload_usernames_and_emails(db: Any) -> None:
    client = api_client()
    before = _snapshot()
    for payload in PAYLOADS:
        response = client.post("/api/auth/register", {"username": payload, "password": PASSWORD}, format="json")
        _error(response, 400, "validation_error")
        assert "username" in response.json()["error"]["fields"]
        email = {"username": "mailer1", "password": PASSWORD, "email": payload}
        _error(client.post("/api/auth/register", email, format="json"), 400, "validation_error")
    _intact(before)


# The failures are the point here, not their throttling.
@override_settings(LOGIN_FAILURE_LIMIT=1000, LOGIN_ADDRESS_FAILURE_LIMIT=1000)
def test_payload_credentials_do_not_log_in(user: Any) -> None:
    client = api_client()
    for payload in PAYLOADS:
        for body in (
            {"username": payload, "password": payload},
            {"username": user.username, "password": payload},
            {"username": f"{user.username}' --", "password": "x"},
        ):
            _error(client.post("/api/auth/token", body, format="json"), 401, "invalid_credentials")


def test_a_payload_password_is_stored_hashed_and_works_only_as_itself(db: Any) -> None:
    client = api_client()
    password = "' OR 1=1 -- <script>x</script> long enough"
    assert (
        client.post("/api/auth/register", {"username": "quoted", "password": password}, format="json").status_code
        == 201
    )
    user = get_user_model().objects.get(username="quoted")
    assert password not in user.password and user.check_password(password)
    assert (
        client.post("/api/auth/token", {"username": "quoted", "password": password}, format="json").status_code == 200
    )
    _error(client.post("/api/auth/token", {"username": "quoted", "password": "' OR 1=1 --"}, format="json"), 401,
           "invalid_credentials")  # fmt: skip


def test_client_order_ids_are_stored_verbatim(world: World) -> None:
    owner = world.api("owner")
    before = _snapshot()
    for n, payload in enumerate(PAYLOADS):
        body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": f"{1700 + n}.00", "quantity": "0.01",
                "client_order_id": payload}  # fmt: skip
        created = owner.post("/api/orders", body, format="json")
        assert created.status_code == 201, created.content
        assert created.json()["client_order_id"] == payload
        assert owner.get(f"/api/orders/{created.json()['id']}").json()["client_order_id"] == payload
        assert owner.post("/api/orders", body, format="json").status_code == 200  # the same order again
        assert Order.objects.get(pk=created.json()["id"]).client_order_id == payload
    listed = {o["client_order_id"] for o in owner.get("/api/orders?limit=200").json()["results"]}
    assert set(PAYLOADS) <= listed
    _intact(before, orders_added=len(PAYLOADS))


def test_order_body_fields_reject_payloads(world: World) -> None:
    owner = world.api("owner")
    before = _snapshot()
    base = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "1800.00", "quantity": "0.01"}
    for payload in PAYLOADS:
        _error(owner.post("/api/orders", {**base, "market": payload}, format="json"), 400,
               "market_not_found", "validation_error")  # fmt: skip
        for name in ("side", "type", "price", "quantity", "time_in_force", "stp", "stop_price"):
            response = owner.post("/api/orders", {**base, name: payload}, format="json")
            assert response.status_code == 400, (name, payload, response.status_code)
    _intact(before)


# --- API: query parameters and path segments -------------------------------------------------------------


def test_order_and_trade_filters_take_payloads(world: World) -> None:
    owner = world.api("owner")
    before = _snapshot()
    for payload in PAYLOADS:
        q = quote(payload, safe="")
        for path in ("/api/orders", "/api/trades"):
            # A filter that is not a symbol (BASE-QUOTE, as the schema states) is refused;
            # any symbol is no market here.
            response = owner.get(f"{path}?market={q}")
            if not SYMBOL_FILTER_PATTERN.fullmatch(payload):
                _error(response, 400, "invalid_parameter")
            else:
                assert response.json()["results"] == [], (path, payload)
        _error(owner.get(f"/api/orders?status={q}"), 400, "invalid_parameter")
        mine = {str(pk) for pk in Order.objects.filter(user=world.owner).values_list("pk", flat=True)}
        for path, key in (("/api/orders", "id"), ("/api/trades", "order_id")):
            # A limit that is not an integer from 1 to 200 is refused (the schema says so).
            _error(owner.get(f"{path}?limit={q}"), 400, "invalid_parameter")
            # An unreadable cursor is a 400; garbage that decodes to nothing is the first page.
            response = owner.get(f"{path}?cursor={q}")
            assert response.status_code in (200, 400), (path, response.status_code)
            if response.status_code == 200:
                assert {row[key] for row in response.json()["results"]} <= mine
    _intact(before)


def test_market_data_takes_payloads(world: World) -> None:
    client = world.api("anonymous")
    for payload in PAYLOADS:
        q = quote(payload, safe="")
        for tail in ("book", "trades", "candles"):
            _error(client.get(f"/api/markets/{q}/{tail}"), 404, *_not_found(payload, "market_not_found"))
        _error(client.get(f"/api/markets/ETH-USDT/book?depth={q}"), 400, "invalid_parameter")
        _error(client.get(f"/api/markets/ETH-USDT/trades?limit={q}"), 400, "invalid_parameter")
        _error(client.get(f"/api/markets/ETH-USDT/candles?interval={q}"), 400, "invalid_parameter")
        _error(client.get(f"/api/markets/ETH-USDT/candles?limit={q}"), 400, "invalid_parameter")
        _error(world.api("owner").get(f"/api/orders/{q}"), 404, *_not_found(payload, "order_not_found"))


def test_flywheel_and_revenue_parameters_take_payloads(world: World) -> None:
    anonymous, staff = world.api("anonymous"), world.api("staff")
    event = failed_event()
    for payload in PAYLOADS:
        q = quote(payload, safe="")
        for name in ("ttx_amount", "monthly_volume", "platform_revenue"):
            params = {"ttx_amount": "100", "monthly_volume": "1000", name: payload}
            _error(anonymous.get(f"/api/flywheel/calculator?{urlencode(params)}"), 400, "invalid_parameter")
        _error(anonymous.get(f"/api/flywheel/comparison/{q}"), 404, *_not_found(payload, "competitor_not_found"))
        for name in ("stream_id", "streamId", "hours"):
            _error(staff.get(f"/api/admin/revenue/onchain-failures?{name}={q}"), 400, "invalid_parameter")
        _error(staff.post(f"/api/admin/revenue/events/{q}/retry"), 404, *_not_found(payload, "revenue_event_not_found"))
        _error(staff.post(f"/api/admin/markets/{q}/reference-price", {"price": "1"}, format="json"), 404,
               *_not_found(payload, "market_not_found"))  # fmt: skip
        credit = {"username": payload, "asset": "USDT", "amount": "1"}
        _error(staff.post("/api/admin/wallets/credit", credit, format="json"), 400, "user_not_found",
               "validation_error")  # fmt: skip
        credit = {"username": world.owner.username, "asset": payload, "amount": "1"}
        _error(staff.post("/api/admin/wallets/credit", credit, format="json"), 400, "asset_not_found",
               "validation_error")  # fmt: skip
    assert DeliveryMetadata.of(RevenueEvent.objects.get(pk=event.pk).metadata).status == DeliveryStatus.FAILED


# --- pages: stored values come back escaped ------------------------------------------------------------------


@pytest.mark.parametrize("payload", HTML)
def test_pages_show_client_order_ids_escaped(world: World, payload: str) -> None:
    client = page_client(world.owner)
    body = {"side": "buy", "type": "limit", "price": "1750.00", "quantity": "0.01", "time_in_force": "",
            "client_order_id": payload}  # fmt: skip
    assert client.post("/trade/ETH-USDT/order", body).status_code == 302
    assert Order.objects.filter(user=world.owner, client_order_id=payload).exists()
    _shown_escaped(client.get("/orders/").content.decode(), payload)
    # The ticket sent back with an error keeps the typed id, escaped inside the value="..." attribute.
    rejected = client.post("/trade/ETH-USDT/order", {**body, "price": "not-a-price"}, HTTP_HX_REQUEST="true")
    assert rejected.status_code == 400
    _shown_escaped(rejected.content.decode(), payload)
    _absent(client.get("/trade/ETH-USDT").content.decode(), payload)


@pytest.mark.parametrize("page", ["/register", "/login"])
def test_account_forms_echo_payloads_escaped(db: Any, page: str) -> None:
    client = page_client()
    for payload in HTML:
        body = {"username": payload, "password": "wrong-password-1", "password_confirm": "x", "email": ""}
        response = client.post(page, body)
        assert 400 <= response.status_code < 500, response.status_code
        _shown_escaped(response.content.decode(), payload)
    assert not get_user_model().objects.filter(username__in=HTML).exists()


def test_a_stored_username_with_markup_is_shown_escaped(world: World) -> None:
    """Usernames are restricted on the way in; one set by other means (the admin, a shell)
    still comes back escaped."""
    payload = HTML[1]
    get_user_model().objects.filter(pk=world.other.pk).update(username=payload)
    world.other.refresh_from_db()
    client = page_client(world.other)
    for path in ("/", "/wallet/", "/orders/", "/flywheel/", "/trade/ETH-USDT"):
        _shown_escaped(client.get(path).content.decode(), payload)


def test_query_parameters_and_paths_of_pages_take_payloads(world: World) -> None:
    client = page_client(world.owner)
    for payload in PAYLOADS:
        q = quote(payload, safe="")
        response = client.get(f"/orders/?market={q}&status={q}&page={q}")
        assert response.status_code == 200
        _absent(response.content.decode(), payload)
        response = client.get(f"/trade/{q}")
        assert response.status_code == 404
        _absent(response.content.decode(), payload)
        for live in (f"/trade/ETH-USDT/live?v={q}", f"/wallet/live?v={q}", f"/live/markets?v={q}"):
            response = client.get(live)
            assert response.status_code in (200, 204), (live, response.status_code)
            _absent(response.content.decode(), payload)
        assert client.post(f"/orders/{q}/cancel").status_code == (404 if "/" in payload else 302)


@pytest.mark.parametrize("target", ["javascript:alert(1)", '"><script>alert(1)</script>', "//evil.example/x"])
def test_login_next_cannot_inject_or_redirect_away(user: Any, target: str) -> None:
    client = page_client()
    page = client.get(f"/login?next={quote(target, safe='')}").content.decode()
    _absent(page, target)
    response = client.post(f"/login?next={quote(target, safe='')}", {"username": user.username,
                                                                       "password": PASSWORD})  # fmt: skip
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    # Off-site and script targets fall back to home; markup is at most an on-site relative path.
    assert not location.scheme and not location.netloc, response["Location"]
    if target.startswith(("javascript:", "//")):
        assert response["Location"] == "/"


# --- the Django admin -------------------------------------------------------------------------------------


def test_admin_lists_take_payloads_in_search_and_filters(world: World) -> None:
    event = failed_event("admin")
    RevenueEvent.objects.filter(pk=event.pk).update(
        metadata=JsonMerge(
            JsonMerge("metadata", patch_tx_hash(tx_hash=HTML[1], nonce=0)),
            patch_failed(attempts=2, error=HTML[0], now=timezone.now(), next_retry_at=timezone.now()),
        )
    )
    client = page_client(world.staff)
    before = _snapshot()
    probes = ["%' UNION SELECT username, password FROM auth_user --", HTML[1]]  # quote, wildcard, markup
    lists = 0
    for model, model_admin in admin.site._registry.items():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        lists += 1
        # Bad filters are refused before rendering (cheap); searches and orderings render the list.
        queries: list[dict[str, str]] = [{"status__exact": probes[0]}]
        if model_admin.search_fields:
            queries += [{"q": payload} for payload in probes] + [{"o": probes[0]}]
        if model is RevenueEvent:
            queries += [{"delivery": payload} for payload in probes]
        for params in queries:
            response = client.get(f"{url}?{urlencode(params)}")
            # 302: Django's answer to a bad filter value (?e=1); 400: a lookup it refuses.
            assert response.status_code in (200, 302, 400), (url, params, response.status_code)
            _absent(response.content.decode(), next(iter(params.values())))
    assert lists == len(admin.site._registry)
    # A stored error and hash with markup: escaped in the event list and the event page.
    html = client.get("/admin/revenue/revenueevent/").content.decode()
    _shown_escaped(html, HTML[0])
    _shown_escaped(client.get(f"/admin/revenue/revenueevent/{event.pk}/change/").content.decode(), HTML[0])
    _intact(before)


def test_admin_refuses_url_lookups_on_display_annotations(world: World) -> None:
    """Was a 500 on SQLite: `?status=failed` compared a JSON key text with raw text."""
    from django.test import RequestFactory

    from revenue.admin import RevenueEventAdmin

    model_admin = admin.site._registry[RevenueEvent]
    assert isinstance(model_admin, RevenueEventAdmin)
    request = RequestFactory().get("/")
    request.user = world.staff
    annotated = set(model_admin.get_queryset(request).query.annotations)
    assert annotated == set(model_admin.display_annotations)
    failed_event("lookup")
    client = page_client(world.staff)
    probes = [(name, "failed") for name in sorted(annotated)] + [
        ("status__exact", "' OR 1=1 --"),
        ("attempts__gt", "x"),
    ]
    for lookup, value in probes:
        response = client.get(f"/admin/revenue/revenueevent/?{urlencode({lookup: value})}")
        assert response.status_code == 400, (lookup, value, response.status_code)
    # The list filter is the way to filter by status.
    assert client.get("/admin/revenue/revenueevent/?delivery=failed").status_code == 200
