"""Every HTML page answers with the platform's Content-Security-Policy (config/settings/base.py,
docs/security.md): the pages for everyone and for a trader, their live fragments, the error
pages, the admin's; the API docs keep the policy of their own (core.views.docs_page), and
other /api/ answers carry none."""

from __future__ import annotations

import pytest
from django.test import Client

from core.views import DOCS_CONTENT_SECURITY_POLICY
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db

POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    # and the chart's logo's <style>, by its hash (tests/pages/test_browser_csp.py)
    "style-src": ["'self'", "'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def _policy(response) -> dict[str, list[str]]:
    directives = [part.split() for part in response["Content-Security-Policy"].split(";")]
    return {name: sources for name, *sources in directives}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/live/markets", 200),
        ("/trade/ETH-USDT", 200),
        ("/flywheel/", 200),
        ("/login", 200),
        ("/register", 200),
        ("/account/password/reset", 200),
        ("/wallet/", 302),  # to the login page
        ("/nowhere", 404),
        ("/?q=%00", 400),
    ],
)
def test_the_pages_for_everyone(client, market, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert _policy(response) == POLICY


@pytest.mark.parametrize(
    "path",
    ["/trade/ETH-USDT", "/trade/ETH-USDT/live", "/wallet/", "/wallet/live", "/orders/", "/keys/", "/account/password"],
)
def test_the_pages_of_a_trader(trader_client, path):
    response = trader_client.get(path)
    assert response.status_code == 200
    assert _policy(response) == POLICY


def test_the_csrf_failure_and_server_error_pages(settings, market):
    refused = Client(enforce_csrf_checks=True).post("/login", {"username": "x", "password": "y"})
    assert refused.status_code == 403
    assert _policy(refused) == POLICY
    settings.ROOT_URLCONF = "tests.core.urls_with_a_failing_endpoint"
    failed = Client(raise_request_exception=False).get("/failing")
    assert failed.status_code == 500
    assert _policy(failed) == POLICY
    assert "<style" not in failed.content.decode()  # its rules are app.css's


@pytest.mark.parametrize("path", ["/admin/login/", "/admin/", "/admin/revenue/revenueevent/failure-report/"])
def test_the_admin_pages(client, path):
    client.force_login(StaffFactory())
    response = client.get(path)
    assert response.status_code in (200, 302)
    assert _policy(response) == POLICY


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_keep_their_own_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == DOCS_CONTENT_SECURITY_POLICY


def test_api_answers_carry_none(client, market):
    # JSON needs none, and the order fast path (core.api.fast) answers as the full path does.
    response = client.get("/api/markets")
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response
