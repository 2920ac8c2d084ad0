"""Shortcuts of the order hot path that must give exactly what they replace: the command's
signature (its key derived once per secret) against django.utils.crypto.salted_hmac, the
command's fields against dataclasses.asdict, and the header checks read from META against
request.headers."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from ipaddress import ip_address, ip_network

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.http import HttpResponse, StreamingHttpResponse
from django.template.response import ContentNotRenderedError
from django.test import RequestFactory, override_settings
from django.urls import resolve
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.crypto import salted_hmac
from django_prometheus.middleware import PrometheusAfterMiddleware
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from accounts.authentication import request_principal_reads
from core.api.fast import _LabelledOnce, _send_response, _unused
from core.middleware import _SAFE_ID, private_api_cache_headers, request_correlation_id
from core.networks import address_in, address_parse
from orders.api.hot import json_response, view_response
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
    command = _place_command(7, request, user_verified=False, credentials_mark="m")
    fields = {key: value for key, value in command.items() if key in asdict(request)}
    assert json.dumps(fields) == json.dumps(asdict(request))  # same keys, same order, same values
    assert list(command)[:3] == ["op", "user_id", "correlation_id"] and command["check_user"] is True
    assert command["credentials_mark"] == "m"


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


# --- the web tier's per-answer shortcuts (docs/performance.md, "The web worker's own costs") ---


def _cache_headers_as_before(request, response):
    """core.middleware.private_api_cache_headers as it was: Django's patch functions."""

    if not request.path.startswith("/api/"):
        return response
    patch_vary_headers(response, ("Authorization", "Cookie"))
    user = getattr(request, "user", None)
    anonymous_read = (
        request.method in ("GET", "HEAD")
        and "HTTP_AUTHORIZATION" not in request.META
        and not (user is not None and user.is_authenticated)
    )
    if not anonymous_read:
        response.headers.pop("Cache-Control", None)
        patch_cache_control(response, no_store=True, private=True)
    return response


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
@pytest.mark.parametrize("authorization", [None, "Bearer x"])
@pytest.mark.parametrize("path", ["/api/orders", "/markets/"])
@pytest.mark.parametrize(
    "preset",
    [
        {},
        {"Vary": "Accept"},
        {"Vary": "Cookie, accept"},
        {"Vary": "*"},
        {"Cache-Control": "max-age=60, public"},
        {"Cache-Control": "no-cache", "Vary": "Authorization"},
        {"Content-Type": "application/json", "Allow": "POST, OPTIONS"},
    ],
)
def test_the_api_cache_headers_are_patch_functions(method, authorization, path, preset):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    request = RequestFactory().generic(method, path, **extra)
    answers = []
    for shape in (private_api_cache_headers, _cache_headers_as_before):
        response = HttpResponse(b"{}", content_type="application/json")
        for name, value in preset.items():
            response[name] = value
        shape(request, response)
        answers.append(list(response.items()))
    assert answers[0] == answers[1]  # same headers, values and order


def test_an_address_is_in_networks_as_parsed_each_time():
    cases = ["127.0.0.1", " 10.1.2.3 ", "::1", "2001:db8::1", "not an address", "", "10.0.0.256"]
    specs = [(), ("10.0.0.0/8",), ("127.0.0.1", "::1"), ["2001:db8::/32"]]
    for text in cases:
        for spec in specs:
            try:
                parsed = ip_address(text.strip())
            except ValueError:
                parsed = None
            expected = parsed is not None and any(parsed in ip_network(n, strict=False) for n in spec)
            assert address_in(text, spec) is expected, (text, spec)
            assert address_parse(text) == parsed


@given(
    body=st.recursive(
        values,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )
)
@example(body={"reason": 'line\u2028paragraph\u2029\x00\x1f\x7f"\\/é€😀', "big": 10**30, "small": -(2**63)})
def test_the_answers_json_is_json_dumps(body):
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    assert json_response(body, status=201).content == text.encode()


def _messages_of(send_response, response):
    sent = []

    async def send(message):
        sent.append(message)

    async_to_sync(send_response)(response, send)
    return sent


def _answers():
    plain = HttpResponse(b'{"id":"1"}', status=201, content_type="application/json")
    plain["Vary"] = "Authorization, Cookie"
    plain["X-Request-ID"] = "abc"
    empty = HttpResponse(b"", status=204)
    big = HttpResponse(b"x" * (2**16 + 5))
    exact = HttpResponse(b"y" * 2**16)
    cookie = HttpResponse(b"{}")
    cookie.set_cookie("a", "b")
    latin = HttpResponse(b"{}")
    latin["X-Name"] = "caf\u00e9"
    streaming = StreamingHttpResponse(iter([b"a", b"b"]))
    return [plain, empty, big, exact, cookie, latin, streaming]


@pytest.mark.parametrize("index", range(7))
def test_the_fast_paths_answer_is_sent_as_django_sends_it(index):
    handler = ASGIHandler()

    async def ours(response, send):
        await _send_response(handler, response, send)

    assert _messages_of(ours, _answers()[index]) == _messages_of(handler.send_response, _answers()[index])


@pytest.mark.parametrize(
    "meta",
    [
        {},
        {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"},
        {"HTTP_X_REQUESTED_WITH": "fetch"},
        {"CONTENT_LENGTH": "42"},
        {"CONTENT_LENGTH": ""},
        {"secure": True},
    ],
)
def test_the_request_counters_are_django_prometheus_own(meta):
    def moved(middleware):
        request = RequestFactory().post("/api/orders", data=b"", content_type="application/json", **meta)
        request.resolver_match = resolve("/api/orders")
        before = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for m in REGISTRY.collect()
            for s in m.samples
            if s.name.startswith("django_http_requests") and not s.name.endswith("_created")
        }
        middleware.process_request(request)
        middleware.process_view(request, lambda r: None, (), {})
        after = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for m in REGISTRY.collect()
            for s in m.samples
            if s.name.startswith("django_http_requests") and not s.name.endswith("_created")
        }
        return {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}

    ours, theirs = moved(_LabelledOnce(_unused)), moved(PrometheusAfterMiddleware(_unused))
    assert ours == theirs and ours  # the same counters moved, by the same amounts


def _response_shapes():
    rendered = view_response({"id": "1"}, status=200, headers={"Allow": "POST, OPTIONS"})
    rendered.render()
    return [
        HttpResponse(b'{"id":"1"}', status=201, content_type="application/json"),
        HttpResponse(b"{}", status=404, content_type="application/json"),
        HttpResponse(b"x", content_type="text/plain; charset=latin-1"),
        rendered,
        view_response({"id": "2"}, status=200, headers={}),  # not rendered: the library's own way
        StreamingHttpResponse(iter([b"a"])),
    ]


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("timed", [True, False])
def test_the_answer_counters_are_django_prometheus_own(index, timed):
    def samples():
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for m in REGISTRY.collect()
            for s in m.samples
            if s.name.startswith("django_http_responses")
            or (s.name.startswith("django_http_requests_") and "latency" in s.name and s.name.endswith("_count"))
            or s.name.startswith("django_http_requests_unknown_latency_total")
        }

    def moved(middleware):
        request = RequestFactory().post("/api/orders", data=b"{}", content_type="application/json")
        request.resolver_match = resolve("/api/orders")
        if timed:
            middleware.process_request(request)
        before = samples()
        for _ in range(2):  # the second time from what the first kept
            middleware.process_response(request, _response_shapes()[index])
        after = samples()
        return {
            key: value - before.get(key, 0.0)
            for key, value in after.items()
            if value != before.get(key, 0.0) and not key[0].endswith("_created")
        }

    if index == 4:  # not rendered: the library refuses it, and so does ours (it is the library's way)
        for middleware in (_LabelledOnce(_unused), PrometheusAfterMiddleware(_unused)):
            with pytest.raises(ContentNotRenderedError):
                moved(middleware)
        return
    ours, theirs = moved(_LabelledOnce(_unused)), moved(PrometheusAfterMiddleware(_unused))
    assert ours == theirs and ours
