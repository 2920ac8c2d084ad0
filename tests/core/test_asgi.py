"""core.asgi: a request body sent without Content-Length (chunked) is read as the body it
is, through the web worker's ASGI application (config.asgi: the fast path before Django)."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, connections
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import ApiKey
from config.asgi import application
from core.asgi import platform_asgi_application
from orders.models import Order, OrderStatus
from tests.asgi import Answer, call
from tests.factories import UserFactory, market_create
from tests.orders.support import trader_create

# Django's ASGI handler runs each request's view in a thread of its own (its own connection).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _connections_closed_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


def _headers(user: object, *, chunked: bool = True, **more: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {AccessToken.for_user(user)}", "Content-Type": "application/json", **more}
    return {**headers, "Transfer-Encoding": "chunked"} if chunked else headers


def test_a_chunked_cancel_all_cancels_in_the_market_it_names():
    # It was read as `{}`: every market's orders cancelled for `{"market": "BTC-USDT"}`.
    market_create("ETH-USDT")
    market_create("BTC-USDT", reference_price="30000.00")
    alice = trader_create(USDT="10000", BTC="1")
    eth = alice.order(side="buy", type="limit", quantity="0.1", price="1900.00").json()["id"]
    btc = alice.order(market="BTC-USDT", side="sell", type="limit", quantity="0.1", price="31000.00").json()["id"]
    body = json.dumps({"market": "BTC-USDT"}).encode()

    answer = call(application, path="/api/orders/cancel-all", body=body, headers=_headers(alice.user))

    assert answer.status == 200, answer.body
    assert [order["id"] for order in answer.json()["cancelled"]] == [btc]
    assert Order.objects.get(pk=eth).status == OrderStatus.OPEN


def test_a_chunked_body_is_parsed_as_with_its_length():
    user = UserFactory()
    body = json.dumps({"label": "bot", "permissions": ["read"]}).encode()
    for chunked in (False, True):
        answer = call(application, path="/api/keys", body=body, headers=_headers(user, chunked=chunked))
        assert answer.status == 201, (chunked, answer.body)  # chunked: 400 "label: This field is required."
    assert ApiKey.objects.filter(user=user).count() == 2


def test_a_chunked_body_above_the_upload_limit_is_refused(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    user = UserFactory()
    body = json.dumps({"label": "x" * 2000, "permissions": ["read"]}).encode()
    answer = call(application, path="/api/keys", body=body, headers=_headers(user))
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "request_too_large"


def _others_connected() -> int:
    """Sessions of this database other than this thread's (PostgreSQL's own count)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def test_a_request_leaves_no_database_connection_open_behind_it(monkeypatch, on_postgres, settings):
    """Django's ASGI handler runs each request's view in a thread of its own: the connection
    that thread opened was kept for CONN_MAX_AGE (60 s, production's), never to be reused, and
    stayed open until the collector freed it. Four API-key clients (a signed request reads
    its key row) held 92 connections of one web worker within 15 s, PostgreSQL answered "too
    many clients" (500s, and no connection left for an engine taking over). The web's
    connections close with each request, as Django's documentation asks of ASGI."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 60)  # production's default
    settings.WEB_CONNECTIONS_PER_REQUEST = True  # as in every settings module but the tests'
    web = platform_asgi_application()
    assert connections["default"].settings_dict["CONN_MAX_AGE"] == 0
    if not on_postgres:
        return  # SQLite: no server to count sessions on (and CONN_MAX_AGE is 0 there)
    user = UserFactory()
    before = _others_connected()
    answers: list[Answer] = []
    body = b'{"label": "bot", "permissions": ["read"]}'

    def request() -> None:
        answers.append(call(web, path="/api/keys", body=body, headers=_headers(user)))

    for _ in range(5):  # each request's view in a thread of its own, as under the server
        thread = threading.Thread(target=request)
        thread.start()
        thread.join()
    assert [answer.status for answer in answers] == [201] * 5, [answer.body for answer in answers]
    assert _others_connected() <= before  # (fewer: what earlier tests left may have been freed since)
