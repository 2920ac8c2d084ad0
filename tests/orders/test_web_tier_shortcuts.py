"""Shortcuts of the order hot path that must give exactly what they replace: the command's
signature (its key derived once per secret) against django.utils.crypto.salted_hmac, the
command's fields against dataclasses.asdict, and the header checks read from META against
request.headers."""

from __future__ import annotations

import io
import json
from dataclasses import asdict

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.test import RequestFactory, override_settings
from django.utils.crypto import salted_hmac
from hypothesis import given
from hypothesis import strategies as st

from accounts.authentication import request_principal_reads
from core.middleware import _SAFE_ID, request_correlation_id
from orders.engine.requests import OrderRequest
from orders.sequencer.commands import command_signature, command_signed
from orders.services.orders import _place_command

values = st.one_of(st.none(), st.text(max_size=12), st.integers(), st.booleans(), st.lists(st.integers(), max_size=3))


@given(payload=st.binary(max_size=300), secret=st.text(min_size=1, max_size=60))
def test_the_signature_is_salted_hmacs(payload, secret):
    with override_settings(SECRET_KEY=secret):
        expected = salted_hmac("orders.sequencer.command", payload, algorithm="sha256").digest()
        assert command_signature(payload) == expected
        assert command_signed(payload, expected)


def test_a_new_secret_signs_anew():
    with override_settings(SECRET_KEY="one" * 20):
        first = command_signature(b"{}")
    with override_settings(SECRET_KEY="two" * 20):
        assert command_signature(b"{}") != first
        assert not command_signed(b"{}", first)


@given(market=values, side=values, type_=values, quantity=values, price=values, stop=values, tif=values, cid=values)
def test_the_commands_fields_are_asdicts(market, side, type_, quantity, price, stop, tif, cid):
    request = OrderRequest(
        market=market,
        side=side,
        type=type_,
        quantity=quantity,
        price=price,
        stop_price=stop,
        time_in_force=tif,
        client_order_id=cid,
    )
    command = _place_command(7, request, user_verified=False)
    fields = {key: value for key, value in command.items() if key in asdict(request)}
    assert json.dumps(fields) == json.dumps(asdict(request))  # same keys, same order, same values
    assert list(command)[:3] == ["op", "user_id", "correlation_id"] and command["check_user"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_X_API_KEY": "k"},
        {"HTTP_X_API_KEY": ""},
        {"HTTP_X_API_KEYS": "k"},
        {"HTTP_AUTHORIZATION": "Bearer x"},
        {"HTTP_X_REQUEST_ID": "abc-123"},
        {"HTTP_X_REQUEST_ID": "not ok!"},
        {"HTTP_X_REQUEST_ID": ""},
    ],
)
def test_header_checks_read_from_meta_as_from_request_headers(headers):
    request = RequestFactory().post("/api/orders", data=b"{}", content_type="application/json", **headers)
    assert request_principal_reads(request) is ("X-API-KEY" in request.headers)
    incoming = request.headers.get("X-Request-ID", "")
    assert request_correlation_id(request) == (incoming if _SAFE_ID.match(incoming) else None)


@pytest.mark.parametrize(
    "name", [b"x-api-key", b"X-API-Key", b"x_api_key", b"x-api-keys", b"x-request-id", b"x_request_id"]
)
def test_header_checks_of_an_asgi_request(name):
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/orders",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (name, b"abc")],
    }
    request = ASGIRequest(scope, io.BytesIO(b""))
    assert request_principal_reads(request) is ("X-API-KEY" in request.headers)
    assert request_correlation_id(request) == (request.headers.get("X-Request-ID") or None)
