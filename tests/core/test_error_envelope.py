"""Malformed input of every kind answers with the contract's envelope, never a 5xx."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.factories import market_create

pytestmark = pytest.mark.django_db

CASES = [
    ("post", "/api/auth/register", "{not json", "application/json", 400, "malformed_request"),
    ("post", "/api/auth/register", "[]", "application/json", 400, "validation_error"),
    # Nested deeper than the JSON parser recurses (a RecursionError, not a ValueError).
    ("post", "/api/auth/register", "[" * 100_000 + "]" * 100_000, "application/json", 400, "malformed_request"),
    (
        "post",
        "/api/orders/cancel-all",
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        "application/json",
        400,
        "malformed_request",
    ),
    ("post", "/api/auth/register", '{"username": "a b", "password": "x"}', "application/json", 400, "validation_error"),
    ("post", "/api/auth/register", '{"username": ["x"], "password": {}}', "application/json", 400, "validation_error"),
    ("post", "/api/auth/register", "username=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (
        "post",
        "/api/auth/token",
        '{"username": "' + "x" * 500 + '", "password": "y"}',
        "application/json",
        400,
        "validation_error",
    ),
    ("post", "/api/auth/token", "null", "application/json", 400, "validation_error"),
    ("post", "/api/auth/token/refresh", '{"refresh": "garbage"}', "application/json", 401, "invalid_token"),
    ("post", "/api/auth/logout", '{"refresh": 42}', "application/json", 401, "invalid_token"),
    ("get", "/api/nowhere", None, None, 404, "not_found"),
    ("delete", "/api/markets", None, None, 405, "method_not_allowed"),
    ("post", "/api/admin/wallets/credit", '{"username": "x"}', "application/json", 400, "validation_error"),
    (
        "post",
        "/api/admin/wallets/credit",
        '{"username": "x", "asset": "USDT", "amount": "1e999999"}',
        "application/json",
        400,
        None,
    ),
    # A JSON number whose exponent is past what a Decimal holds (the amounts' exact parser).
    (
        "post",
        "/api/admin/wallets/credit",
        '{"username": "x", "asset": "USDT", "amount": 1e' + "9" * 5000 + "}",
        "application/json",
        400,
        "malformed_request",
    ),
    (
        "post",
        "/api/orders",
        '{"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "1", "price": 1e' + "9" * 40 + "}",
        "application/json",
        400,
        "malformed_request",
    ),
    (
        "post",
        "/api/admin/markets/ETH-USDT/reference-price",
        '{"price": "-5"}',
        "application/json",
        400,
        "invalid_price",
    ),
    # Not a string or a number: refused by the input's shape (the schema says string or number).
    (
        "post",
        "/api/admin/markets/ETH-USDT/reference-price",
        '{"price": [1]}',
        "application/json",
        400,
        "validation_error",
    ),
    (
        "post",
        "/api/admin/markets/ETH-USDT/reference-price",
        '{"price": "\\u0000"}',
        "application/json",
        400,
        "invalid_price",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "code"), CASES)
def test_malformed_requests_get_the_envelope(staff_client, method, path, body, content_type, status, code):
    market_create("ETH-USDT")
    kwargs = {"data": body, "content_type": content_type} if body is not None else {}
    response = getattr(staff_client, method)(path, **kwargs)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "fields"}
    assert error["message"]
    if code:
        assert error["code"] == code


def test_field_errors_carry_fields(api_client):
    response = api_client.post("/api/auth/register", {"password": "x"}, format="json")
    assert response.json()["error"]["fields"]["username"]


@pytest.mark.parametrize("debug", [False, True])
def test_a_body_above_the_upload_limit_is_a_400_debug_or_not(user_client, debug):
    """Django refuses to read a body above DATA_UPLOAD_MAX_MEMORY_SIZE (RequestDataTooBig,
    a SuspiciousOperation): a 400 in the envelope, also under DEBUG (`make run`), where the
    API's debug answer must not take it for a defect."""
    market_create("ETH-USDT")
    body = '{"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "1", "price": "1", "pad": "'
    body += "x" * 2048 + '"}'
    with override_settings(DEBUG=debug, DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        response = user_client.post("/api/orders", data=body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/api/orders", "/api/time", "/"])
def test_more_query_parameters_than_django_reads_is_a_400_debug_or_not(user_client, debug, path):
    """More than DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) query parameters: Django refuses to
    parse them (TooManyFieldsSent) at the first read of request.GET, and its error report
    (the admins' mail handler, the DEBUG page) read request.GET again while reporting it, so
    the request, with or without credentials, was a 500."""
    user_client.raise_request_exception = False
    query = "&".join(f"p{i}=1" for i in range(1001))
    with override_settings(DEBUG=debug):
        response = user_client.get(f"{path}?{query}")
    assert response.status_code == 400, response.content[:300]
    if path.startswith("/api/"):
        assert response.json()["error"]["code"] == "invalid_parameter"
