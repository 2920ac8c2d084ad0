"""POST /api/orders on the hot path (orders.api.hot): the web tier authenticates from the
token alone, counts the rate in the process, reads the body without DRF and answers with
the engine's body; the engine refuses users that do not exist or are inactive."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.tokens import AccessToken

from accounts.authentication import Principal
from accounts.services import api_key_create
from orders.models import Order
from tests.accounts.api_key_support import signed_request
from tests.factories import UserFactory
from tests.orders.invariants import assert_invariants
from tests.orders.support import trader_create

pytestmark = pytest.mark.django_db

LIMIT = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1900.00"}


def _envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


def test_the_web_tier_issues_no_statement(market, trader, monkeypatch, django_assert_num_queries):
    """Authentication, rate and body cost no statement: with the engine's answer given, the
    request runs none (the DRF path read the user's row, and the throttle asked Redis)."""
    alice = trader(USDT="1000")
    answer = alice.order(**LIMIT).json()  # a real placement, for a real answer to replay
    sent: list[dict[str, Any]] = []

    def engine(command: dict[str, Any], *, market: str | None = None) -> dict[str, Any]:
        sent.append(command)
        return {"status": 201, "order": answer}

    monkeypatch.setattr("orders.services.orders.engine_call", engine)
    with django_assert_num_queries(0):
        response = alice.order(**LIMIT)
    assert response.status_code == 201 and response.json() == answer
    assert response["Content-Type"] == "application/json"
    (command,) = sent
    assert command["user_id"] == alice.user.pk and command["check_user"] is True
    assert {key: command[key] for key in LIMIT} == LIMIT


def test_a_placement_costs_the_batch_and_one_user_check(market, trader):
    alice = trader(USDT="1000")
    alice.order(**LIMIT)  # wallets and the steady state exist
    with CaptureQueriesContext(connection) as captured:
        response = alice.order(**LIMIT)
    assert response.status_code == 201
    statements = [query["sql"] for query in captured.captured_queries]
    users = [sql for sql in statements if "auth_user" in sql]
    assert len(users) == 1 and "is_active" in users[0], users
    assert not [sql for sql in statements if "django_session" in sql]
    assert len(statements) <= 10, statements  # the resting order's batch (9, ids reserved) and the user check
    assert_invariants()


def test_the_answer_is_the_order_as_read_back(market, trader):
    alice, bob = trader(USDT="1000"), trader(ETH="1")
    bob.order(side="sell", type="limit", quantity="0.05", price="1900.00")
    placed = alice.order(**LIMIT)
    assert placed.status_code == 201
    body = placed.json()
    assert body["status"] == "partially_filled" and len(body["fills"]) == 1
    assert alice.api.get(f"/api/orders/{body['id']}").json() == body


def test_a_repeated_client_order_id_answers_the_same_order(market, trader):
    alice = trader(USDT="1000")
    first = alice.order(**LIMIT, client_order_id="hot-1")
    again = alice.order(**LIMIT, client_order_id="hot-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == alice.api.get(f"/api/orders/{first.json()['id']}").json()
    _envelope(alice.order(**{**LIMIT, "price": "1800.00"}, client_order_id="hot-1"), 409, "duplicate_client_order_id")
    assert Order.objects.filter(user=alice.user).count() == 1


def _token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


def test_a_deactivated_users_token_places_nothing(market, trader):
    alice = trader(USDT="1000")
    client = _token_client(alice.user)
    alice.user.is_active = False
    alice.user.save(update_fields=["is_active"])
    error = _envelope(client.post("/api/orders", LIMIT, format="json"), 401, "invalid_token")
    assert error["message"] == "The credentials are not valid."
    assert not Order.objects.filter(user=alice.user).exists()
    assert_invariants()


def test_a_deleted_users_token_places_nothing(market):
    doomed = UserFactory()
    client = _token_client(doomed)
    doomed.delete()
    response = client.post("/api/orders", LIMIT, format="json")
    _envelope(response, 401, "invalid_token")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Order.objects.exists()


@pytest.mark.parametrize("header", ["Bearer x.y.z", "Bearer", "Bearer a b"])
def test_bad_tokens_are_401_on_the_hot_path(market, trader, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post("/api/orders", LIMIT, format="json")
    _envelope(response, 401, "invalid_token")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_without_credentials_the_drf_view_answers(market):
    response = APIClient().post("/api/orders", LIMIT, format="json")
    _envelope(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_framing_errors_are_answered_as_before(market, trader):
    alice = trader(USDT="1000")
    malformed = alice.api.post("/api/orders", "{not json", content_type="application/json")
    _envelope(malformed, 400, "malformed_request")
    nested = alice.api.post("/api/orders", '{"a":' * 100_000 + "1" + "}" * 100_000, content_type="application/json")
    _envelope(nested, 400, "malformed_request")  # deeper than the JSON parser recurses
    # A number whose exponent is past what a Decimal holds: InvalidOperation was a 500.
    beyond = alice.api.post("/api/orders", '{"price": 1e' + "9" * 5000 + "}", content_type="application/json")
    _envelope(beyond, 400, "malformed_request")
    _envelope(alice.api.post("/api/orders", "a=b", content_type="text/plain"), 415, "unsupported_media_type")
    empty = alice.api.post("/api/orders", "", content_type="application/json")
    assert _envelope(empty, 400, "validation_error")["fields"]["market"] == ["This field is required."]
    refused = alice.order(**{**LIMIT, "side": "up"})
    assert _envelope(refused, 400, "validation_error")["fields"] == {"side": ['"up" is not a valid choice.']}


def test_a_principal_that_may_not_trade_is_403(market, trader, monkeypatch):
    alice = trader(USDT="1000")
    reader = Principal(user_id=alice.user.pk, scheme="key", can_trade=False)
    monkeypatch.setattr("orders.api.hot.request_principal", lambda request: reader)
    _envelope(alice.order(**LIMIT), 403, "permission_denied")
    assert not Order.objects.filter(user=alice.user).exists()


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "timer", staticmethod(lambda: 1_000_000.0))


@override_settings(ORDER_RATE_WORKERS=2)
def test_each_process_allows_its_share_of_the_rate(market, monkeypatch, frozen_clock):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "orders": "5/min"})
    alice, bob = trader_create(USDT="1000"), trader_create(USDT="1000")
    assert [alice.order(**LIMIT).status_code for _ in range(3)] == [201, 201, 429]  # 5 // 2 workers
    refused = alice.order(**LIMIT)
    assert _envelope(refused, 429, "throttled") and refused["Retry-After"] == "61"
    assert bob.order(**LIMIT).status_code == 201
    assert Order.objects.filter(user=alice.user).count() == 2


def test_a_signed_placement_with_the_database_away_is_503_not_500(market, trader):
    """A signed request's key row is read before the engine is asked (the hot path, outside
    DRF's exception handler): with the database away (a restart, a failover, "too many
    clients"), the client got Django's 500 where the DRF views and a bearer token's
    placement answer 503 with Retry-After, retryable."""
    buyer = trader(USDT="10000")
    key, secret = api_key_create(user=buyer.user, label="bot", permissions=["read", "trade"])
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}

    def database_away(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        raise OperationalError("connection failed: FATAL:  sorry, too many clients already")

    client = APIClient(raise_request_exception=False)
    with connection.execute_wrapper(database_away):
        answer = signed_request(client, key.key, secret, "POST", "/api/orders", body)
    assert answer.status_code == 503, answer.content
    assert answer.json()["error"]["code"] == "service_unavailable" and answer["Retry-After"] == "1"
    assert not Order.objects.exists()
