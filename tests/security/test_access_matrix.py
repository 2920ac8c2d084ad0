"""Who may call what: every URL pattern of the project, walked from the resolver, has an
expectation here, and each (route, method) is exercised as anonymous, the owner, another
user and staff. A new endpoint without an entry fails `test_every_route_has_an_expectation`.

API (docs: /work/shared/spec/api.md): 401 `not_authenticated` for anonymous callers on
protected endpoints, 403 `permission_denied` for non-staff on staff endpoints, 404
`order_not_found` (never 403: no leak) for another user's order. Pages: anonymous visitors
are sent to the login page. The Django admin (every pattern of its namespace) is staff only.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any
from urllib.parse import quote

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern
from django.utils import timezone
from rest_framework.views import APIView

from accounts.error_text import error_sentence
from accounts.services import api_key_create
from accounts.tokens import FamilyRefreshToken
from flywheel.competitors import COMPETITORS
from orders.models import Market, Order, OrderStatus, Wallet
from revenue.delivery.metadata import DeliveryMetadata
from revenue.models import ChainDeployment, DeliveryBatch, RevenueEvent, StaffAction
from tests.factories import PASSWORD, UserFactory
from tests.security.conftest import SYMBOL, World, api_client, failed_event, order_open

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ACTORS = ("anonymous", "other", "owner", "staff")  # anonymous and denied actors first: no side effects yet


class Access(Enum):
    PUBLIC = "public"  # anyone
    USER = "user"  # any logged-in user; the data is the caller's own
    OWNER = "owner"  # one user's object: anyone else gets 404
    STAFF = "staff"  # staff only


Call = tuple[dict[str, str], dict[str, Any] | None]  # path arguments, body
Prepare = Callable[[World], Call]


def _nothing(world: World) -> Call:
    return {}, None


@dataclass(frozen=True)
class Rule:
    access: Access
    ok: int  # the status an allowed caller gets
    prepare: Prepare = _nothing  # fresh arguments per call (a cancel needs a new open order each time)
    query: str = ""
    not_found: str = "order_not_found"  # the code of an OWNER route's 404


@dataclass(frozen=True)
class Route:
    rules: dict[str, Rule]


_seq = itertools.count(1)


def _symbol(world: World) -> Call:
    return {"symbol": SYMBOL}, None


def _owner_order(world: World) -> Call:
    return {"order_id": str(world.order.pk)}, None


def _fresh_owner_order(world: World) -> Call:
    return {"order_id": str(order_open(world.owner).pk)}, None


def _owner_client_order_id(world: World) -> Call:
    order = world.order
    if order.client_order_id is None:
        order.client_order_id = "matrix-1"
        order.save(update_fields=["client_order_id"])
    return {"client_order_id": order.client_order_id}, None


def _key_body(world: World) -> Call:
    return {}, {"label": f"bot{next(_seq)}", "permissions": ["read"]}


def _fresh_owner_key(world: World) -> Call:
    api_key, _secret = api_key_create(user=world.owner, label=f"k{next(_seq)}", permissions=["read"])
    return {"key_id": str(api_key.pk)}, None


def _page_key(world: World) -> Call:
    return {}, {"label": f"page{next(_seq)}", "password": PASSWORD}


def _page_password(world: World) -> Call:
    return {}, {"password": PASSWORD, "new_password": "one-new-password", "new_password_confirm": "another-one"}


def _page_reset(world: World) -> Call:
    return {}, {"email": "nobody@example.com"}


def _reset_link(world: World) -> Call:
    return {"uidb64": "MQ", "token": "not-a-token"}, None


def _register(world: World) -> Call:
    return {}, {"username": f"newcomer{next(_seq)}", "password": PASSWORD}


def _credentials(world: World) -> Call:
    return {}, {"username": world.owner.username, "password": PASSWORD}


def _refresh(world: World) -> Call:
    return {}, {"refresh": str(FamilyRefreshToken.for_user_in_family(world.owner, family=None))}


def _order_body(world: World) -> Call:
    return {}, {"market": SYMBOL, "side": "buy", "type": "limit", "price": "1800.00", "quantity": "0.01"}


def _cancel_all(world: World) -> Call:
    return {}, {"market": SYMBOL}


def _credit(world: World) -> Call:
    return {}, {"username": world.owner.username, "asset": "USDT", "amount": "1"}


def _reference_price(world: World) -> Call:
    return {"symbol": SYMBOL}, {"price": "2001.00"}


def _competitor(world: World) -> Call:
    return {"competitor": next(iter(COMPETITORS))}, None


def _retry(world: World) -> Call:
    return {"event_id": str(failed_event(f"retry{next(_seq)}").pk)}, None


def _stuck_batch(world: World) -> Call:
    # Staff reach it; with no chain node to check (the tests' embedded chain), the service
    # refuses it: 409 batch_not_abandonable (the chain's checks: test_delivery_anvil.py).
    now = timezone.now()
    deployment = ChainDeployment.objects.get_or_create(
        chain_id=31337, contract_address="0x" + "1" * 40,
        defaults={"signer_address": "0x" + "2" * 40, "deployed_at": now, "embedded": True},
    )[0]  # fmt: skip
    batch = DeliveryBatch.objects.create(
        deployment=deployment, size=1, value_wei="1", nonce=next(_seq), gas=1, max_fee_per_gas=1,
        max_priority_fee_per_gas=1, submitted_at=now, item_ids=[1], event_ids=[1], tx_hashes=["0x" + "a" * 64],
    )  # fmt: skip
    return {"batch_id": str(batch.pk)}, {"reason": "matrix"}


def _page_login(world: World) -> Call:
    return {}, {"username": world.owner.username, "password": PASSWORD}


def _page_register(world: World) -> Call:
    name = f"pagecomer{next(_seq)}"
    return {}, {"username": name, "password": PASSWORD, "password_confirm": PASSWORD, "email": ""}


def _page_order(world: World) -> Call:
    body = {"side": "buy", "type": "limit", "price": "1800.00", "quantity": "0.01", "time_in_force": ""}
    return {"symbol": SYMBOL}, body


PUB, USR, OWN, STF = Access.PUBLIC, Access.USER, Access.OWNER, Access.STAFF

API_ROUTES: dict[str, Route] = {
    "api/auth/register": Route({"POST": Rule(PUB, 201, _register)}),
    "api/auth/token": Route({"POST": Rule(PUB, 200, _credentials)}),
    "api/auth/token/refresh": Route({"POST": Rule(PUB, 200, _refresh)}),
    "api/auth/logout": Route({"POST": Rule(PUB, 205, _refresh)}),
    "api/me": Route({"GET": Rule(USR, 200)}),
    "api/markets": Route({"GET": Rule(PUB, 200)}),
    "api/markets/<str:symbol>/book": Route({"GET": Rule(PUB, 200, _symbol)}),
    "api/markets/<str:symbol>/trades": Route({"GET": Rule(PUB, 200, _symbol)}),
    "api/markets/<str:symbol>/candles": Route({"GET": Rule(PUB, 200, _symbol)}),
    "api/markets/<str:symbol>/ticker": Route({"GET": Rule(PUB, 200, _symbol)}),
    "api/tickers": Route({"GET": Rule(PUB, 200)}),
    "api/time": Route({"GET": Rule(PUB, 200)}),
    "api/keys": Route({"GET": Rule(USR, 200), "POST": Rule(USR, 201, _key_body)}),
    "api/keys/<str:key_id>": Route({"DELETE": Rule(OWN, 204, _fresh_owner_key, not_found="api_key_not_found")}),
    "api/wallets": Route({"GET": Rule(USR, 200)}),
    "api/orders": Route({"GET": Rule(USR, 200), "POST": Rule(USR, 201, _order_body)}),
    "api/orders/cancel-all": Route({"POST": Rule(USR, 200, _cancel_all)}),
    "api/orders/by-client-id/<anytext:client_order_id>": Route({"GET": Rule(OWN, 200, _owner_client_order_id)}),
    "api/orders/<str:order_id>": Route({"GET": Rule(OWN, 200, _owner_order)}),
    "api/orders/<str:order_id>/cancel": Route({"POST": Rule(OWN, 200, _fresh_owner_order)}),
    "api/trades": Route({"GET": Rule(USR, 200)}),
    "api/admin/wallets/credit": Route({"POST": Rule(STF, 200, _credit)}),
    "api/admin/markets/<str:symbol>/reference-price": Route({"POST": Rule(STF, 200, _reference_price)}),
    "api/admin/ledger": Route({"GET": Rule(STF, 200)}),
    "api/flywheel/metrics": Route({"GET": Rule(PUB, 200)}),
    "api/flywheel/reserve-status": Route({"GET": Rule(PUB, 200)}),
    "api/flywheel/revenue-streams": Route({"GET": Rule(PUB, 200)}),
    "api/flywheel/calculator": Route({"GET": Rule(PUB, 200, query="ttx_amount=1000&monthly_volume=50000")}),
    "api/flywheel/comparison/<str:competitor>": Route({"GET": Rule(PUB, 200, _competitor)}),
    "api/flywheel/my-impact": Route({"GET": Rule(USR, 200)}),
    "api/flywheel/my-impact/export": Route({"GET": Rule(USR, 200)}),
    "api/flywheel/my-impact/insights": Route({"GET": Rule(USR, 200)}),
    "api/admin/revenue/onchain-failures": Route({"GET": Rule(STF, 200)}),
    "api/admin/revenue/onchain-worker-status": Route({"GET": Rule(STF, 200)}),
    "api/admin/revenue/events/<str:event_id>/retry": Route({"POST": Rule(STF, 202, _retry)}),
    "api/admin/revenue/batches/<str:batch_id>/abandon": Route({"POST": Rule(STF, 409, _stuck_batch)}),
    "api/schema/": Route({"GET": Rule(PUB, 200)}),
    "api/docs/": Route({"GET": Rule(PUB, 200)}),
    "api/redoc/": Route({"GET": Rule(PUB, 200)}),
    "healthz": Route({"GET": Rule(PUB, 200)}),
    # For the scraper only; every actor here connects from 127.0.0.1, which the development
    # allow-list admits (other addresses and the token: test_headers_and_operations.py).
    "metrics": Route({"GET": Rule(PUB, 200)}),
}

PAGE_ROUTES: dict[str, Route] = {
    "": Route({"GET": Rule(PUB, 200)}),
    "live/markets": Route({"GET": Rule(PUB, 200)}),
    "login": Route({"GET": Rule(PUB, 200), "POST": Rule(PUB, 302, _page_login)}),
    "register": Route({"GET": Rule(PUB, 200), "POST": Rule(PUB, 302, _page_register)}),
    # A form's address opened as a page (GET): the page the form was on, nothing done
    # (accounts.views.form_address); it was an empty 405.
    "logout": Route({"GET": Rule(PUB, 302), "POST": Rule(PUB, 302)}),
    "trade/": Route({"GET": Rule(PUB, 302)}),
    "trade/<str:symbol>": Route({"GET": Rule(PUB, 200, _symbol)}),
    "trade/<str:symbol>/live": Route({"GET": Rule(PUB, 200, _symbol)}),
    # Opened as a page (the address bar after a refused order): the trade screen, for anyone.
    "trade/<str:symbol>/order": Route({"GET": Rule(PUB, 302, _symbol), "POST": Rule(USR, 302, _page_order)}),
    # The caller's own orders in the market only (tests/pages/test_pages_views.py).
    "trade/<str:symbol>/cancel-all": Route({"GET": Rule(PUB, 302, _symbol), "POST": Rule(USR, 200, _symbol)}),
    "orders/": Route({"GET": Rule(USR, 200)}),
    "orders/<str:order_id>/cancel": Route(
        {"GET": Rule(PUB, 302, _fresh_owner_order), "POST": Rule(OWN, 302, _fresh_owner_order)}
    ),
    "fills/": Route({"GET": Rule(USR, 200)}),
    "wallet/": Route({"GET": Rule(USR, 200)}),
    "wallet/live": Route({"GET": Rule(USR, 200)}),
    "flywheel/": Route({"GET": Rule(PUB, 200)}),
    "keys/": Route({"GET": Rule(USR, 200), "POST": Rule(USR, 200, _page_key)}),
    # Another user's key: the page says it is not found (tests/accounts/test_api_keys_page.py).
    "keys/<str:key_id>/delete": Route(
        {"GET": Rule(PUB, 302, _fresh_owner_key), "POST": Rule(USR, 302, _fresh_owner_key)}
    ),
    # The two new passwords differ: refused before anything is checked or changed.
    "account/password": Route({"GET": Rule(USR, 200), "POST": Rule(USR, 400, _page_password)}),
    # Anyone may ask for a link (the same answer whether or not an account has the address).
    "account/password/reset": Route({"GET": Rule(PUB, 200), "POST": Rule(PUB, 302, _page_reset)}),
    "account/password/reset/sent": Route({"GET": Rule(PUB, 200)}),
    # A link that does not verify: the page says so (tests/accounts/test_password_reset_page.py).
    "account/password/reset/<str:uidb64>/<str:token>": Route(
        {"GET": Rule(PUB, 200, _reset_link), "POST": Rule(PUB, 200, _reset_link)}
    ),
}

ALL_ROUTES = {**API_ROUTES, **PAGE_ROUTES}


# --- the URL tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    route: str
    namespace: str | None
    regex: bool
    callback: Any


def _walk(resolver: URLResolver, prefix: str = "", namespace: str | None = None) -> Iterator[Pattern]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + str(entry.pattern), entry.namespace or namespace)
        elif isinstance(entry, URLPattern):
            regex = isinstance(entry.pattern, RegexPattern)
            yield Pattern(prefix + str(entry.pattern), namespace, regex, entry.callback)


def _project_patterns() -> list[Pattern]:
    return list(_walk(get_resolver()))


def _admin_patterns() -> list[Pattern]:
    return [p for p in _project_patterns() if p.namespace == "admin"]


def _path(route: str, kwargs: dict[str, str]) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: quote(kwargs[m.group(1)], safe=""), route)


def test_every_route_has_an_expectation() -> None:
    patterns = _project_patterns()
    # The API's catch-all (the envelope's 404 for any path and method) is covered by
    # tests/core/test_urls_canonical.py.
    routes = [p for p in patterns if not getattr(p.callback, "catch_all", False)]
    outside_admin = {p.route for p in routes if p.namespace != "admin"}
    missing = sorted(outside_admin - set(ALL_ROUTES))
    stale = sorted(set(ALL_ROUTES) - outside_admin)
    assert not missing, f"routes without an access expectation (add them to API_ROUTES/PAGE_ROUTES): {missing}"
    assert not stale, f"expectations for routes that no longer exist: {stale}"
    # The admin namespace is covered pattern by pattern in test_admin_is_staff_only.
    assert len([p for p in patterns if p.namespace == "admin"]) > 50


def test_declared_methods_are_the_methods_the_api_views_implement() -> None:
    for pattern in _project_patterns():
        view_class = getattr(pattern.callback, "view_class", None)
        if pattern.route not in API_ROUTES or view_class is None or not issubclass(view_class, APIView):
            continue
        implemented = {m for m in METHODS if hasattr(view_class, m.lower())}
        assert implemented == set(API_ROUTES[pattern.route].rules), pattern.route


# --- API and pages, per (route, method) ----------------------------------------------------------------


def _fingerprint() -> tuple[Any, ...]:
    """The state a refused request must leave untouched."""
    return (
        sorted(Order.objects.values_list("pk", "status")),
        sorted((w.pk, w.balance, w.locked) for w in Wallet.objects.all()),
        sorted(Market.objects.values_list("symbol", "reference_price")),
        sorted((e.pk, DeliveryMetadata.of(e.metadata).status) for e in RevenueEvent.objects.all()),
    )


def _expected(access: Access, actor: str) -> str:
    """'ok', 'unauthenticated', 'forbidden' or 'not_found' for this actor."""
    if access is Access.PUBLIC or (actor == "owner" and access is not Access.STAFF):
        return "ok"
    if actor == "anonymous":
        return "unauthenticated"
    if access is Access.USER:
        return "ok"
    if access is Access.OWNER:
        return "not_found"  # staff too: the user API shows the caller's own orders only
    return "ok" if actor == "staff" else "forbidden"


def _envelope(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def _check_api(world: World, route: str, method: str) -> None:
    rule = API_ROUTES[route].rules[method]
    for actor in ACTORS:
        expected = _expected(rule.access, actor)
        kwargs, body = rule.prepare(world)
        url = _path(route, kwargs) + (f"?{rule.query}" if rule.query else "")
        before = _fingerprint() if expected != "ok" else None
        response = world.api(actor).generic(method, url, *_json(body))
        if expected == "ok":
            assert response.status_code == rule.ok, (actor, response.status_code, response.content[:300])
            continue
        if expected == "unauthenticated":
            _envelope(response, 401, "not_authenticated")
            assert response["WWW-Authenticate"].startswith("Bearer")
        elif expected == "forbidden":
            _envelope(response, 403, "permission_denied")
        else:
            _envelope(response, 404, rule.not_found)
        assert _fingerprint() == before, f"a refused {method} by {actor} changed state"


def _json(body: dict[str, Any] | None) -> tuple[str, str]:
    return (json.dumps(body), "application/json") if body is not None else ("", "application/json")


def _check_page(world: World, route: str, method: str) -> None:
    rule = PAGE_ROUTES[route].rules[method]
    for actor in ACTORS:
        expected = _expected(rule.access, actor)
        kwargs, body = rule.prepare(world)
        path = _path(route, kwargs)
        client = world.page(actor)
        before = _fingerprint() if expected != "ok" else None
        if method == "GET":
            response = client.get(path)
        elif expected == "not_found":
            # Under htmx the refusal is a status (without it: a redirect with an error message).
            response = client.post(path, body or {}, HTTP_HX_REQUEST="true")
        else:
            response = client.post(path, body or {})
        if expected == "ok":
            assert response.status_code == rule.ok, (actor, response.status_code)
            continue
        if expected == "unauthenticated":
            assert response.status_code == 302, (actor, response.status_code)
            # The order ticket's URL places on POST only: after login the trader returns to the page.
            page = path.removesuffix("/order") if route == "trade/<str:symbol>/order" else path
            assert response["Location"] == f"/login?next={quote(page)}"
        else:
            assert expected == "not_found"
            assert response.status_code == 404, (actor, response.status_code)
            assert error_sentence("order_not_found") in response.content.decode()
        assert _fingerprint() == before, f"a refused {method} by {actor} changed state"


def _every_case(world: World, routes: dict[str, Route], check: Callable[[World, str, str], None]) -> int:
    """Runs every (route, method) and reports all failures at once. One test, not one per
    case: each case would rebuild the world (the whole folder must stay fast)."""
    failures, cases = [], 0
    for route, spec in routes.items():
        for method in spec.rules:
            cases += 1
            try:
                check(world, route, method)
            except AssertionError as exc:
                failures.append(f"{method} /{route}: {exc}")
    assert not failures, "\n".join(failures)
    return cases


def test_api_access(world: World) -> None:
    assert _every_case(world, API_ROUTES, _check_api) == 43


def test_page_access(world: World) -> None:
    assert _every_case(world, PAGE_ROUTES, _check_page) == 33


def test_undeclared_methods_are_refused(world: World) -> None:
    """One test for all routes (not parametrized): each case would rebuild the world."""
    refused = 0
    for route, spec in ALL_ROUTES.items():
        kwargs: dict[str, str] = {}
        for rule in spec.rules.values():
            kwargs |= rule.prepare(world)[0]
        path = _path(route, kwargs)
        # Staff (who passes every permission check) still meets a 405: the method is not there.
        client = world.api("staff") if route in API_ROUTES else world.page("staff")
        for method in METHODS:
            if method in spec.rules:
                continue
            response = client.generic(method, path)
            assert response.status_code == 405, (method, path, response.status_code)
            if route.startswith("api/") and route not in ("api/schema/", "api/docs/", "api/redoc/"):
                _envelope(response, 405, "method_not_allowed")
            refused += 1
    assert refused > 150


# --- what "owner only" means for lists -------------------------------------------------------------


def test_lists_hold_only_the_callers_data(world: World) -> None:
    other = world.api("other")
    owner = world.api("owner")
    assert other.get("/api/orders").json()["results"] == []
    assert other.get("/api/trades").json()["results"] == []
    owned = {o["id"] for o in owner.get("/api/orders").json()["results"]}
    assert owned == {str(pk) for pk in Order.objects.filter(user=world.owner).values_list("pk", flat=True)}
    fills = owner.get("/api/trades").json()["results"]
    assert [(f["trade_id"], f["liquidity"]) for f in fills] == [(str(world.trade.pk), "maker")]
    # The counterparty sees the same trade from its side, with its own order, not the owner's.
    theirs = world.api("counterparty").get("/api/trades").json()["results"]
    assert [f["order_id"] for f in theirs] == [str(world.trade.taker_order_id)]
    assert theirs[0]["order_id"] != str(world.trade.maker_order_id)


def test_order_ids_cannot_be_probed(world: World) -> None:
    """Another user's order, a missing order and a malformed id answer alike: 404 order_not_found."""
    other = world.api("other")
    missing = Order.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000  # type: ignore[operator]
    for raw in (world.order.pk, missing, "abc", "-1", "1e3", "9" * 30):
        _envelope(other.get(f"/api/orders/{raw}"), 404, "order_not_found")
        _envelope(other.post(f"/api/orders/{raw}/cancel"), 404, "order_not_found")
    assert Order.objects.get(pk=world.order.pk).status == OrderStatus.OPEN


def test_my_impact_is_the_callers(world: World) -> None:
    assert Decimal(world.api("owner").get("/api/flywheel/my-impact").json()["ttx_holdings"]) == 1500
    assert Decimal(world.api("other").get("/api/flywheel/my-impact").json()["ttx_holdings"]) == 0
    export = world.api("other").get("/api/flywheel/my-impact/export").content.decode()
    assert world.other.username in export and world.owner.username not in export


def test_wallets_are_the_callers(world: World) -> None:
    other = {w["asset"]: w for w in world.api("other").get("/api/wallets").json()}
    assert "TTX" not in other or Decimal(other["TTX"]["balance"]) == 0
    owner = {w["asset"]: w for w in world.api("owner").get("/api/wallets").json()}
    assert Decimal(owner["TTX"]["balance"]) == 1500


def test_cancel_page_for_another_users_order_reports_not_found(world: World) -> None:
    response = world.page("other").post(f"/orders/{world.order.pk}/cancel", follow=True)
    assert response.redirect_chain == [("/orders/", 302)]
    assert error_sentence("order_not_found") in response.content.decode()
    assert Order.objects.get(pk=world.order.pk).status == OrderStatus.OPEN


def test_staff_endpoints_accept_a_session_and_refuse_non_staff_sessions(world: World) -> None:
    for path in (
        "/api/admin/ledger",
        "/api/admin/revenue/onchain-failures",
        "/api/admin/revenue/onchain-worker-status",
    ):
        assert world.page("staff").get(path).status_code == 200
        _envelope(world.page("owner").get(path), 403, "permission_denied")
        _envelope(world.page("anonymous").get(path), 401, "not_authenticated")


def test_staff_without_the_permission_cannot_move_money_or_read_revenue_events(world: World) -> None:
    """Was open to any staff account: one with is_staff and no permission at all credited
    itself 1,000,000 USDT with POST /api/admin/wallets/credit (make run), set reference
    prices, and read the revenue events that the admin's own report refuses it (403).
    Each endpoint asks for the permission the admin would: orders.add_deposit,
    orders.change_market, revenue.view_revenueevent, orders.view_wallet (the ledger sums
    every wallet; it answered any staff account too)."""
    bare = UserFactory(is_staff=True)
    api = api_client(bare)
    credit = {"username": bare.username, "asset": "USDT", "amount": "1000000"}
    _envelope(api.post("/api/admin/wallets/credit", credit, format="json"), 403, "permission_denied")
    assert not Wallet.objects.filter(user=bare, balance__gt=0).exists()
    price = f"/api/admin/markets/{world.market.symbol}/reference-price"
    _envelope(api.post(price, {"price": "1.00"}, format="json"), 403, "permission_denied")
    world.market.refresh_from_db()
    assert world.market.reference_price != Decimal("1.00")
    for path in ("/api/admin/revenue/onchain-failures", "/api/admin/revenue/onchain-worker-status"):
        _envelope(api.get(path), 403, "permission_denied")
    _envelope(api.get("/api/admin/ledger"), 403, "permission_denied")  # was 200: every balance, summed
    abandon = "/api/admin/revenue/batches/{batch_id}/abandon".format(**_stuck_batch(world)[0])
    _envelope(api.post(abandon, {"reason": "mine now"}, format="json"), 403, "permission_denied")
    assert not StaffAction.objects.exists()

    for codename in ("add_deposit", "change_market", "view_revenueevent", "view_wallet"):
        bare.user_permissions.add(Permission.objects.get(codename=codename))
    api = api_client(get_user_model().objects.get(pk=bare.pk))
    # Permitted, it still cannot credit itself (four eyes: another staff member does); others, yes.
    _envelope(api.post("/api/admin/wallets/credit", credit, format="json"), 400, "validation_error")
    assert not Wallet.objects.filter(user=bare, balance__gt=0).exists()
    other = {**credit, "username": world.owner.username}
    assert api.post("/api/admin/wallets/credit", other, format="json").status_code == 200
    assert api.post(price, {"price": "1.00", "large_move": True}, format="json").status_code == 200
    for path in ("/api/admin/revenue/onchain-failures", "/api/admin/revenue/onchain-worker-status"):
        assert api.get(path).status_code == 200
    assert api.get("/api/admin/ledger").status_code == 200


# --- the Django admin ------------------------------------------------------------------------------


def _admin_url(pattern: Pattern) -> str:
    if pattern.regex:
        if "app_label" in pattern.route:
            return "/admin/orders/"
        assert "(?P<url>" in pattern.route, pattern.route  # the catch-all
        return "/admin/no-such-page/"
    if pattern.route.startswith("admin/r/"):
        order = Order.objects.order_by("pk").first()
        assert order is not None
        content_type = ContentType.objects.get_for_model(Order)
        return f"/admin/r/{content_type.pk}/{order.pk}/"
    match = re.match(r"admin/(\w+)/(\w+)/", pattern.route)
    kwargs: dict[str, str] = {}
    if match and "<" in pattern.route:
        model = apps.get_model(match.group(1), match.group(2))
        pk = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
        key = str(pk if pk is not None else 0)
        kwargs = {"object_id": key, "id": key, "event_id": key, "batch_id": key}
    return _path(pattern.route, kwargs)


# Staff renders these (every list, the custom report page) and must not meet a 5xx. Change
# forms are left out: slow to render (~150 ms each) and not about who may reach them.
STAFF_RENDERED = {"index", "changelist_view", "app_index", "failure_report_view", "worker_status_view",
                  "house_stock_view", "catch_all_view"}  # fmt: skip


def test_admin_is_staff_only(world: World) -> None:
    failed_event()  # one row for the revenue event pages
    anonymous, user, staff = world.page("anonymous"), world.page("owner"), world.page("staff")
    patterns = _admin_patterns()
    changelists = 0
    for pattern in patterns:
        url = _admin_url(pattern)
        if pattern.route == "admin/login/":
            assert anonymous.get(url).status_code == 200  # the only public admin page
            continue
        for who, client in (("anonymous", anonymous), ("non-staff", user)):
            response = client.get(url)
            assert response.status_code == 302, (who, url, response.status_code)
            # admin_view sends a logout without a session to the index, itself behind the login.
            login = "/admin/" if pattern.route == "admin/logout/" else "/admin/login/?next="
            assert response["Location"].startswith(login), (who, url, response["Location"])
        view = getattr(pattern.callback, "__name__", "")
        if view not in STAFF_RENDERED:
            continue  # Django's stock history/delete/password pages: the refusals above are the point
        response = staff.get(url)
        assert response.status_code < 500, (url, response.status_code)
        if response.status_code == 302:
            assert not response["Location"].startswith("/admin/login/"), url
        if view == "changelist_view":
            changelists += 1
            assert response.status_code == 200, url
    assert changelists == len(admin.site._registry)
