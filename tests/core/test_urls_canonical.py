"""Every URL answers with and without its trailing slash: the form config.urls declares
serves, the other one redirects to it permanently with its query string (301 for GET and
HEAD, 308 otherwise, so a POST is repeated as a POST). Every /api/ path answers the
envelope, DEBUG or not."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern

from config import page_urls
from tests.factories import market_create

pytestmark = pytest.mark.django_db

# Arguments for the patterns that take some.
SAMPLE_ARGUMENTS = {"symbol": "ETH-USDT", "order_id": "1", "key_id": "1", "uidb64": "MQ", "token": "x-y"}


def _page_paths() -> Iterator[str]:
    for pattern in page_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern)
        for name, value in SAMPLE_ARGUMENTS.items():
            route = route.replace(f"<str:{name}>", value)
        assert "<" not in route, f"add a sample argument for {route}"
        yield "/" + route


PAGES = list(_page_paths())
OTHER_ENDPOINTS = ["/healthz", "/metrics", "/admin/", "/admin/login/", "/api/markets", "/api/docs/", "/api/schema/",
                   "/api/auth/token", "/api/orders"]  # fmt: skip


def _toggled(path: str) -> str:
    return path[:-1] if path.endswith("/") else f"{path}/"


@pytest.fixture
def client_with_market(client: Client) -> Client:
    market_create("ETH-USDT")
    return client


def test_the_pages_listed_are_every_page():
    declared = {str(p.pattern) for p in page_urls.urlpatterns}
    assert len(PAGES) == len(declared) >= 14


@pytest.mark.parametrize("path", [p for p in PAGES if p != "/"] + OTHER_ENDPOINTS)
def test_the_other_form_redirects_to_the_declared_one_with_its_query(client_with_market, path):
    canonical = client_with_market.get(path)
    assert canonical.status_code not in (301, 308, 404), (path, canonical.status_code)
    other = client_with_market.get(f"{_toggled(path)}?next=/wallet/&x=1%202")
    assert other.status_code == 301, (path, other.status_code)
    assert other["Location"] == f"{path}?next=/wallet/&x=1%202"
    bare = client_with_market.head(_toggled(path))
    assert (bare.status_code, bare["Location"]) == (301, path)


@pytest.mark.parametrize("path", ["/login", "/trade/ETH-USDT/order", "/api/auth/token", "/api/orders"])
def test_a_post_to_the_other_form_is_redirected_as_a_post(client_with_market, path):
    response = client_with_market.post(f"{_toggled(path)}?a=1", {"x": "1"})
    assert response.status_code == 308
    assert response["Location"] == f"{path}?a=1"


def test_the_admin_keeps_its_slashes(admin_client):
    response = admin_client.get("/admin/revenue/revenueevent?delivery=failed")
    assert (response.status_code, response["Location"]) == (301, "/admin/revenue/revenueevent/?delivery=failed")


def test_unknown_pages_stay_not_found(client_with_market):
    for path in ("/nowhere", "/nowhere/", "/trade/ETH-USDT/nowhere", "/orders/1/cancel/x"):
        assert client_with_market.get(path).status_code == 404, path


def _assert_envelope(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content)["error"]["code"] == code


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post", "put", "delete", "head"])
@pytest.mark.parametrize("path", ["/api/nowhere", "/api/nowhere/", "/api/orders/1/x/y", "/api/", "/api"])
def test_every_unknown_api_path_answers_the_envelope(client, settings, debug, method, path):
    settings.DEBUG = debug
    response = getattr(client, method)(path)
    if method == "head":
        assert response.status_code == 404
        return
    _assert_envelope(response, 404, "not_found")


@pytest.mark.parametrize("debug", [False, True])
def test_a_failing_endpoint_answers_the_envelope_and_a_page_the_error_page(settings, debug):
    settings.DEBUG = debug
    settings.ROOT_URLCONF = "tests.core.urls_with_a_failing_endpoint"
    client = Client(raise_request_exception=False)
    _assert_envelope(client.get("/api/failing"), 500, "internal_error")
    page = client.get("/failing")
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("debug", [False, True])
def test_api_method_and_auth_errors_keep_the_envelope_under_debug(client, settings, debug):
    settings.DEBUG = debug
    _assert_envelope(client.delete("/api/markets"), 405, "method_not_allowed")
    _assert_envelope(client.get("/api/orders"), 401, "not_authenticated")
