"""CSRF: every state-changing page form refuses a POST without a valid token (403, nothing
changed) and accepts it with one, in the form field or in the X-CSRFToken header that htmx
sends. On the API, JWT calls are not CSRF-bound (a browser never attaches a bearer token by
itself) while session-authenticated calls are."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from orders.models import Order, OrderStatus, Wallet
from tests.factories import PASSWORD
from tests.security.conftest import World, order_open, page_client

pytestmark = pytest.mark.django_db

FORM_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _form_token(client: Client, page: str) -> str:
    match = FORM_TOKEN.search(client.get(page).content.decode())
    assert match, f"no CSRF token on {page}"
    return match.group(1)


@dataclass(frozen=True)
class Form:
    """One page form: where its token is shown, where it posts, and how to tell it worked."""

    name: str
    page: str  # a page rendering the form (and so its token)
    logged_in: bool
    target: Callable[[World], str]
    body: Callable[[World], dict[str, str]]
    done: Callable[[World, Any], bool]  # did the accepted POST take effect?


def _open_order(world: World) -> Order:
    return Order.objects.filter(user=world.owner, status=OrderStatus.OPEN).order_by("-pk").first() or order_open(
        world.owner
    )


FORMS = [
    Form(
        "login",
        "/login",
        False,
        lambda w: "/login",
        lambda w: {"username": w.owner.username, "password": PASSWORD},
        lambda w, r: r.status_code == 302 and "_auth_user_id" in r.client.session,
    ),
    Form(
        "register",
        "/register",
        False,
        lambda w: "/register",
        lambda w: {"username": "csrfcomer", "password": PASSWORD, "password_confirm": PASSWORD, "email": ""},
        lambda w, r: get_user_model().objects.filter(username="csrfcomer").exists(),
    ),
    Form(
        "logout",
        "/wallet/",
        True,
        lambda w: "/logout",
        lambda w: {},
        lambda w, r: r.status_code == 302 and "_auth_user_id" not in r.client.session,
    ),
    Form(
        "order placement",
        "/trade/ETH-USDT",
        True,
        lambda w: "/trade/ETH-USDT/order",
        lambda w: {"side": "buy", "type": "limit", "price": "1850.00", "quantity": "0.01", "time_in_force": ""},
        lambda w, r: Order.objects.filter(user=w.owner, price="1850.00").exists(),
    ),
    Form(
        "order cancel",
        "/orders/",
        True,
        lambda w: f"/orders/{_open_order(w).pk}/cancel",
        lambda w: {},
        lambda w, r: Order.objects.filter(user=w.owner, status=OrderStatus.CANCELLED).exists(),
    ),
    Form(
        "admin login",
        "/admin/login/",
        False,
        lambda w: "/admin/login/",
        lambda w: {"username": w.staff.username, "password": PASSWORD},
        lambda w, r: r.status_code == 302 and "_auth_user_id" in r.client.session,
    ),
]


def _state() -> tuple[Any, ...]:
    return (
        sorted(Order.objects.values_list("pk", "status")),
        get_user_model().objects.count(),
    )


def _client(world: World, form: Form) -> Client:
    user = (world.staff if form.name.startswith("admin") else world.owner) if form.logged_in else None
    return page_client(user, enforce_csrf_checks=True)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_page_form_needs_a_valid_token(world: World, form: Form) -> None:
    client = _client(world, form)
    real = _form_token(client, form.page)  # sets the CSRF cookie: only the submitted token is missing
    before = _state()
    forged = real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")
    for extra in ({}, {"csrfmiddlewaretoken": ""}, {"csrfmiddlewaretoken": forged}):
        response = client.post(form.target(world), {**form.body(world), **extra})
        assert response.status_code == 403, (form.name, extra, response.status_code)
    # A token of another browser (its own cookie) does not fit this browser's cookie.
    stranger = _form_token(page_client(enforce_csrf_checks=True), "/login")
    assert client.post(form.target(world), {**form.body(world), "csrfmiddlewaretoken": stranger}).status_code == 403
    assert _state() == before
    if form.logged_in:
        assert "_auth_user_id" in client.session  # the refused logout did not log out
    # The same POST with the page's own token goes through.
    response = client.post(form.target(world), {**form.body(world), "csrfmiddlewaretoken": real})
    assert response.status_code in (200, 302) and form.done(world, response), (form.name, response.status_code)


@pytest.mark.parametrize("form", [f for f in FORMS if f.logged_in], ids=lambda f: f.name)
def test_page_form_accepts_the_token_in_the_htmx_header(world: World, form: Form) -> None:
    client = _client(world, form)
    token = _form_token(client, form.page)
    response = client.post(form.target(world), form.body(world), HTTP_X_CSRFTOKEN=token, HTTP_HX_REQUEST="true")
    assert response.status_code < 400 and form.done(world, response), (form.name, response.status_code)


def test_a_post_from_a_foreign_origin_is_refused_even_with_a_token(world: World) -> None:
    client = page_client(world.owner, enforce_csrf_checks=True)
    token = _form_token(client, "/trade/ETH-USDT")
    body = {"side": "buy", "type": "limit", "price": "1850.00", "quantity": "0.01", "csrfmiddlewaretoken": token}
    before = _state()
    assert client.post("/trade/ETH-USDT/order", body, HTTP_ORIGIN="https://evil.example").status_code == 403
    assert client.post("/trade/ETH-USDT/order", body, HTTP_ORIGIN="null").status_code == 403
    assert _state() == before
    # The same request from the site itself goes through.
    assert client.post("/trade/ETH-USDT/order", body, HTTP_ORIGIN="http://testserver").status_code == 302


# --- the API ----------------------------------------------------------------------------------------

ORDER = {"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "1850.00", "quantity": "0.01"}


def _csrf_api_client(user: Any) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_jwt_calls_are_not_csrf_bound(world: World) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(world.owner).access_token}")
    assert client.post("/api/orders", ORDER, format="json").status_code == 201
    assert client.post(f"/api/orders/{world.order.pk}/cancel").status_code == 200


def test_session_api_calls_need_the_csrf_token(world: World) -> None:
    client = _csrf_api_client(world.owner)
    refused = client.post("/api/orders", ORDER, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    # says what is missing: it read "You are not allowed to do this.", as for a missing permission
    assert "CSRF" in refused.json()["error"]["message"] and "X-CSRFToken" in refused.json()["error"]["message"]
    assert client.post(f"/api/orders/{world.order.pk}/cancel").status_code == 403
    assert not Order.objects.filter(user=world.owner, price="1850.00").exists()
    assert Order.objects.get(pk=world.order.pk).status == OrderStatus.OPEN
    token = _form_token(client, "/trade/ETH-USDT")
    assert client.post("/api/orders", ORDER, format="json", HTTP_X_CSRFTOKEN=token).status_code == 201
    # Reads are not state-changing: no token needed.
    assert client.get("/api/orders").status_code == 200


def test_session_staff_calls_need_the_csrf_token(world: World) -> None:
    client = _csrf_api_client(world.staff)
    body = {"username": world.owner.username, "asset": "USDT", "amount": "5"}
    balances = sorted(Wallet.objects.values_list("pk", "balance"))
    refused = client.post("/api/admin/wallets/credit", body, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert "X-CSRFToken" in refused.json()["error"]["message"]
    assert sorted(Wallet.objects.values_list("pk", "balance")) == balances
    token = _form_token(client, "/trade/ETH-USDT")
    assert client.post("/api/admin/wallets/credit", body, format="json", HTTP_X_CSRFTOKEN=token).status_code == 200


@pytest.mark.parametrize("path", ["/api/orders", "/api/auth/register", "/api/auth/token", "/api/auth/logout"])
def test_api_refuses_what_a_cross_site_form_can_send(world: World, path: str) -> None:
    """A cross-site <form> can only send form or text bodies: the JSON-only API answers 415
    (the credential endpoints, which are not session-bound, included)."""
    client = page_client(world.owner)
    before = _state()
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"):
        response = client.generic("POST", path, "username=a&password=b", content_type=content_type)
        assert response.status_code == 415, (path, content_type, response.status_code)
        assert response.json()["error"]["code"] == "unsupported_media_type"
    assert _state() == before
