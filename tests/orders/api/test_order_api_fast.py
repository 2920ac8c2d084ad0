"""POST /api/orders and POST /api/orders/{id}/cancel under ASGI through core.api.fast
(config/asgi.py): the same answers as Django's full path (its ASGI handler and all of
MIDDLEWARE, the DRF views), headers, metrics counters and log lines included, with no
statement in the web tier; what it does not take goes to
Django unchanged. Both apps run here as the web worker runs them (an ASGI call)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.db.backends.utils import CursorWrapper
from django.test import override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.tokens import AccessToken

from accounts.services import api_key_create
from accounts.tokens import token_pair_issue
from core.api.fast import FAST_MIDDLEWARE, FastPath
from core.api.throttling import worker_rate_reset
from core.asgi import platform_asgi_application
from orders.api import hot
from orders.api.urls import FAST_ROUTES
from orders.models import Order
from orders.sequencer.zmq import _unavailable
from tests.accounts.api_key_support import signed_headers
from tests.asgi import Answer, call
from tests.factories import UserFactory
from tests.orders.support import trader_create

# The full path runs the view in a thread of its own (its own database connection).
pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1900.00"}
# What differs between two placements: the order's id and moments.
VARYING = {"id", "created_at", "updated_at", "filled_at", "cancelled_at"}


@pytest.fixture(autouse=True)
def _connections_closed_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # The full path's request threads end with the request: their connections must too.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    worker_rate_reset()


@pytest.fixture(scope="module")
def apps() -> tuple[Any, FastPath]:
    full = platform_asgi_application()
    return full, FastPath(full, routes=FAST_ROUTES)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The requests the fast path answered itself."""
    requests: list[object] = []
    original = FastPath._respond

    async def spy(self: FastPath, request: Any, handler: Any) -> Any:
        requests.append(request)
        return await original(self, request, handler)

    monkeypatch.setattr(FastPath, "_respond", spy)
    return requests


def bearer(user: Any, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}", "Content-Type": "application/json", **headers}


def bearer_issued(user: Any, **headers: str) -> dict[str, str]:
    """As bearer, with an access token as a login issues it (its password mark included)."""
    return {**bearer(user, **headers), "Authorization": f"Bearer {token_pair_issue(user=user)['access']}"}


def _password_change(user: Any) -> None:
    user.set_password("another-password-2026")
    user.save()


def counters() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter sample of the process (django-prometheus' and the platform's), but the
    interpreter's own (CPU seconds, garbage collections)."""
    found = {}
    for metric in REGISTRY.collect():
        if metric.type != "counter" or metric.name.startswith(("process_", "python_")):
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


Seen = tuple[Answer, dict[Any, float], list[tuple[str, int, str]]]


def observe(caplog: pytest.LogCaptureFixture, app: Any, **request: Any) -> Seen:
    """An answer, the counters it moved and the web's log lines about it."""
    caplog.clear()
    before = counters()
    with caplog.at_level(logging.INFO):
        answer = call(app, **request)
    after = counters()
    moved = {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}
    lines = [
        (r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name in ("core.requests", "django.request")
    ]
    return answer, moved, lines


def both(apps: tuple[Any, FastPath], caplog: pytest.LogCaptureFixture, **request: Any) -> tuple[Seen, Seen]:
    """The same request through the fast path, then the full path."""
    full_app, fast_app = apps
    return observe(caplog, fast_app, **request), observe(caplog, full_app, **request)


def _counted_once_more(fast: Answer, full: Answer) -> list[list[tuple[str, str]]]:
    """Both answers' headers, RateLimit-Remaining and -Reset set aside once checked: the
    full path answers second (on the real clock), so a request both counted leaves one
    less (none when refused), and no later a reset."""
    fast_left, full_left = fast.header("RateLimit-Remaining"), full.header("RateLimit-Remaining")
    assert (fast_left is None) == (full_left is None), (fast.headers, full.headers)
    if fast_left is not None and full_left is not None:
        assert int(full_left) == max(0, int(fast_left) - 1) or fast.status == full.status == 429
        assert int(full.header("RateLimit-Reset") or -1) <= int(fast.header("RateLimit-Reset") or -1)
    set_aside = ("RateLimit-Remaining", "RateLimit-Reset")
    return [[(k, "r" if k in set_aside else v) for k, v in h] for h in (fast.headers, full.headers)]


def assert_same(fast: Seen, full: Seen, *, varying: frozenset[str] = frozenset()) -> None:
    (fast_answer, fast_moved, fast_lines), (full_answer, full_moved, full_lines) = fast, full
    fast_headers, full_headers = _counted_once_more(fast_answer, full_answer)
    if varying:  # two orders: their bodies' lengths may differ
        for answer in (fast_answer, full_answer):
            assert answer.header("Content-Length") == str(len(answer.body))
        fast_headers, full_headers = (
            [(k, "n" if k == "Content-Length" else v) for k, v in h] for h in (fast_headers, full_headers)
        )
    assert (fast_answer.status, fast_headers) == (full_answer.status, full_headers)
    fast_body, full_body = fast_answer.json(), full_answer.json()
    if varying:
        fast_body = {k: v for k, v in fast_body.items() if k not in varying}
        full_body = {k: v for k, v in full_body.items() if k not in varying}
    assert fast_body == full_body
    assert fast_moved == full_moved
    assert fast_lines == full_lines


def test_the_fast_path_knows_every_middleware(apps):
    from django.conf import settings

    assert tuple(settings.MIDDLEWARE) == FAST_MIDDLEWARE
    assert apps[1].enabled
    with override_settings(MIDDLEWARE=[*FAST_MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]):
        assert not FastPath(apps[0], routes=FAST_ROUTES).enabled  # an unknown one: Django answers all


def test_a_placement_answers_as_the_full_path(market, apps, caplog):
    alice = trader_create(USDT="1000")
    body = json.dumps(LIMIT).encode()
    fast, full = both(apps, caplog, body=body, headers=bearer(alice.user, **{"X-Request-ID": "req-1"}))
    assert fast[0].status == 201 and fast[0].header("Cache-Control") == "no-store, private"
    assert fast[0].header("X-Request-ID") == "req-1" and fast[0].header("X-Frame-Options") == "DENY"
    assert fast[0].header("Vary") == "Authorization, Cookie"
    assert [e["status"] for e in fast[0].json()["events"]] == [e["status"] for e in full[0].json()["events"]]
    assert_same(fast, full, varying=frozenset(VARYING | {"events"}))
    assert Order.objects.filter(user=alice.user).count() == 2
    # A correlation id made for a request that brings none, as the middleware does.
    made = call(apps[1], body=body, headers=bearer(alice.user)).header("X-Request-ID")
    assert made and made != "req-1"


def test_the_request_line_names_the_placing_user_on_both_paths(market, apps, caplog):
    """Who placed it: the fast path authenticates without a user object (request_principal)."""
    alice = trader_create(USDT="1000")
    body = json.dumps(LIMIT).encode()
    for app in apps:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="core.requests"):
            assert call(app, body=body, headers=bearer(alice.user)).status == 201
        (line,) = [record for record in caplog.records if record.name == "core.requests"]
        assert getattr(line, "user_id", None) == alice.user.pk, app


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("garbage token", 401, "invalid_token"),
        ("expired token", 401, "invalid_token"),
        ("token of a password since changed", 401, "invalid_token"),
        ("negative quantity", 400, "invalid_quantity"),
        ("unknown market", 400, "market_not_found"),
        ("not an object", 400, "validation_error"),
        ("nested too deeply", 400, "malformed_request"),
    ],
)
def test_refusals_answer_as_the_full_path(market, apps, caplog, case, status, code):
    user = UserFactory()
    headers, order = bearer(user), dict(LIMIT)
    if case == "garbage token":
        headers["Authorization"] = "Bearer abc.def.ghi"
    if case == "expired token":
        token = AccessToken.for_user(user)
        token.set_exp(lifetime=-timedelta(seconds=1) - token.get_token_backend().get_leeway())
        headers["Authorization"] = f"Bearer {token}"
    if case == "token of a password since changed":
        headers = bearer_issued(user)
        _password_change(user)
    if case == "negative quantity":
        order["quantity"] = "-1"
    if case == "unknown market":
        order["market"] = "NOPE-USDT"
    body = b"[1]" if case == "not an object" else json.dumps(order).encode()
    if case == "nested too deeply":  # deeper than the JSON parser recurses: DRF's view answers
        body = b"[" * 100_000 + b"]" * 100_000
        headers["Content-Length"] = str(len(body))  # which DRF reads the body by
    fast, full = both(apps, caplog, body=body, headers={**headers, "X-Request-ID": "req-2"})
    assert fast[0].status == status and fast[0].json()["error"]["code"] == code, fast[0].body
    assert_same(fast, full)
    assert any(name == "django.request" for name, _, _ in fast[2])  # Django's line for an answer >= 400


def test_the_order_rate_answers_as_the_full_path(market, apps, caplog, monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "timer", staticmethod(lambda: 1_000_000.0))
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "orders": "1/min"})
    alice = trader_create(USDT="1000")
    body, headers = json.dumps(LIMIT).encode(), bearer(alice.user, **{"X-Request-ID": "req-3"})
    assert call(apps[1], body=body, headers=headers).status == 201
    fast, full = both(apps, caplog, body=body, headers=headers)
    assert fast[0].status == 429 and fast[0].header("Retry-After") == "61"
    assert_same(fast, full)


def test_the_cancel_rate_answers_as_the_full_path_and_leaves_the_order_rate_alone(market, apps, caplog, monkeypatch):
    """Cancels have a count of their own (CANCEL_RATE_LIMIT): one was never limited, and a
    trader at its order rate can still pull its orders."""
    monkeypatch.setattr(SimpleRateThrottle, "timer", staticmethod(lambda: 1_000_000.0))
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "orders": "2/min", "cancels": "1/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    alice = trader_create(USDT="1000")
    headers = bearer(alice.user, **{"X-Request-ID": "req-5"})
    first, second = (call(apps[1], body=json.dumps(LIMIT).encode(), headers=headers).json()["id"] for _ in range(2))
    assert call(apps[1], path=_cancel(first), headers=headers).status == 200  # the order rate spent: cancels go on
    fast, full = both(apps, caplog, path=_cancel(second), headers=headers)
    assert fast[0].status == 429 and fast[0].header("Retry-After") == "61", fast[0].body
    assert_same(fast, full)
    assert Order.objects.get(pk=second).status == "open"
    client = APIClient()
    client.force_authenticate(alice.user)
    assert client.post("/api/orders/cancel-all", {}, format="json").status_code == 429


def test_the_fast_path_answers_the_rate_limit_headers(market, apps, taken, monkeypatch):
    """Placements and cancels answered on the event loop carry the count's budget, the
    429 too, Reset then naming Retry-After's moment (tests/security/test_rate_limit_headers.py)."""
    monkeypatch.setattr(SimpleRateThrottle, "timer", staticmethod(lambda: 1_000_000.0))
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "orders": "2/min", "cancels": "1/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    alice = trader_create(USDT="1000")
    body, headers = json.dumps(LIMIT).encode(), bearer(alice.user)
    budgets = []
    answers = [call(apps[1], body=body, headers=headers) for _ in range(3)]
    for answer in answers:
        budgets.append(tuple(answer.header(f"RateLimit-{name}") for name in ("Limit", "Remaining", "Reset")))
    assert [a.status for a in answers] == [201, 201, 429]
    assert budgets == [("2", "1", "60"), ("2", "0", "60"), ("2", "0", "61")]
    assert answers[2].header("Retry-After") == "61"
    cancels = [call(apps[1], path=_cancel(answer.json()["id"]), headers=headers) for answer in answers[:2]]
    assert [c.status for c in cancels] == [200, 429]
    assert [c.header("RateLimit-Remaining") for c in cancels] == ["0", "0"]
    assert cancels[1].header("RateLimit-Reset") == cancels[1].header("Retry-After") == "61"
    assert len(taken) == 5  # all answered by the fast path


def test_no_engine_answers_503_as_the_full_path(market, apps, caplog, monkeypatch):
    down = _unavailable()
    monkeypatch.setattr("orders.services.orders.engine_call", lambda command, *, market=None: down)
    monkeypatch.setattr("orders.services.engine_async.engine_call", lambda command, *, market=None: down)
    alice = trader_create(USDT="1000")
    fast, full = both(
        apps, caplog, body=json.dumps(LIMIT).encode(), headers=bearer(alice.user, **{"X-Request-ID": "r4"})
    )
    assert fast[0].status == 503 and fast[0].header("Retry-After") == "1"
    assert_same(fast, full)


@override_settings(DEBUG=True)
def test_an_unexpected_error_answers_as_the_full_path(market, apps, caplog, monkeypatch):
    def broken(data: object) -> Any:
        raise RuntimeError("a defect")

    monkeypatch.setattr(hot, "order_request_parse", broken)
    fast, full = both(
        apps, caplog, body=json.dumps(LIMIT).encode(), headers=bearer(UserFactory(), **{"X-Request-ID": "r5"})
    )
    assert fast[0].status == 500 and fast[0].json()["error"]["code"] == "internal_error"
    assert_same(fast, full)


def _signed(user: Any) -> dict[str, str]:
    key, secret = api_key_create(user=user, label="bot", permissions=["read", "trade"])
    body = json.dumps(LIMIT).encode()
    headers = signed_headers(key.key, secret, "POST", "/api/orders", body)
    return {key.removeprefix("HTTP_").replace("_", "-"): value for key, value in headers.items()}


@pytest.mark.parametrize("case", ["no credentials", "form body", "api key", "query string", "bad host"])
def test_what_it_does_not_take_goes_to_django(market, apps, caplog, taken, case):
    alice = trader_create(USDT="1000")
    headers, query, body = bearer(alice.user, **{"X-Request-ID": "r6"}), b"", json.dumps(LIMIT).encode()
    if case == "no credentials":
        del headers["Authorization"]
    if case == "form body":
        headers["Content-Type"], body = "application/x-www-form-urlencoded", b"market=ETH-USDT"
    if case == "api key":
        del headers["Authorization"]
        headers.update(_signed(alice.user))
    if case == "query string":
        query = b"a=1"
    if case == "bad host":
        headers["Host"] = "evil.example"
    answer = call(apps[1], body=body, headers=headers, query=query)
    assert not taken, case
    assert answer.status in {201, 400, 401, 415}, (case, answer.status, answer.body[:200])


def _statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    statements: list[str] = []
    execute = CursorWrapper.execute

    def counting(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        statements.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", counting)
    return statements


def test_the_web_tier_issues_no_statement(market, apps, monkeypatch):
    """With the engine's answer given, the fast path runs no statement on any connection."""
    alice = trader_create(USDT="1000")
    answer = alice.order(**LIMIT).json()  # a real placement, for a real answer to replay
    monkeypatch.setattr(
        "orders.services.engine_async.engine_call", lambda command, *, market=None: {"status": 201, "order": answer}
    )
    statements = _statements(monkeypatch)
    placed = call(apps[1], body=json.dumps(LIMIT).encode(), headers=bearer(alice.user))
    assert placed.status == 201 and placed.json() == answer
    assert statements == []


def test_a_repeated_client_order_id_answers_the_stored_order(market, apps):
    alice = trader_create(USDT="1000")
    body, headers = json.dumps({**LIMIT, "client_order_id": "c-1"}).encode(), bearer(alice.user)
    first = call(apps[1], body=body, headers=headers)
    again = call(apps[1], body=body, headers=headers)
    assert (first.status, again.status) == (201, 200)
    assert again.json() == first.json() == alice.api.get(f"/api/orders/{first.json()['id']}").json()


def _cancel(path_id: str) -> str:
    return f"/api/orders/{path_id}/cancel"


def test_a_cancel_answers_as_the_full_path(market, apps, caplog):
    alice = trader_create(USDT="1000")
    first, second = (alice.order(**LIMIT).json()["id"] for _ in range(2))
    headers = bearer(alice.user, **{"X-Request-ID": "c1"})
    full_app, fast_app = apps
    fast = observe(caplog, fast_app, path=_cancel(first), headers=headers)
    full = observe(caplog, full_app, path=_cancel(second), headers=headers)
    # The access lines name each its order's path.
    fast = (*fast[:2], [(n, lv, m.replace(f"/{first}/", "/ID/")) for n, lv, m in fast[2]])
    full = (*full[:2], [(n, lv, m.replace(f"/{second}/", "/ID/")) for n, lv, m in full[2]])
    assert fast[0].status == 200 and fast[0].json()["status"] == "cancelled"
    assert fast[0].header("Vary") == "Authorization, Cookie" and fast[0].header("Allow") == "POST, OPTIONS"
    assert [e["status"] for e in fast[0].json()["events"]] == ["open", "cancelled"]
    assert_same(fast, full, varying=frozenset(VARYING | {"events"}))
    # Cancelled already: 409 from both.
    assert_same(*both(apps, caplog, path=_cancel(first), headers=headers))


@pytest.mark.parametrize(
    "case",
    ["unknown id", "not an id", "garbage token", "someone else's order", "inactive user", "password changed"],
)
def test_cancel_refusals_answer_as_the_full_path(market, apps, caplog, case):
    alice, bob = trader_create(USDT="1000"), trader_create(USDT="1000")
    order_id = alice.order(**LIMIT).json()["id"]
    headers = bearer(alice.user, **{"X-Request-ID": "c2"})
    path = _cancel({"unknown id": "999999", "not an id": "abc"}.get(case, order_id))
    if case == "garbage token":
        headers["Authorization"] = "Bearer abc.def.ghi"
    if case == "someone else's order":
        headers = bearer(bob.user, **{"X-Request-ID": "c2"})
    if case == "inactive user":
        alice.user.is_active = False
        alice.user.save(update_fields=["is_active"])
    if case == "password changed":
        headers = bearer_issued(alice.user, **{"X-Request-ID": "c2"})
        _password_change(alice.user)
    fast, full = both(apps, caplog, path=path, headers=headers)
    assert fast[0].status in {401, 404}, (case, fast[0].body)
    assert_same(fast, full)
    assert Order.objects.get(pk=order_id).status == "open"


def test_a_cancel_without_a_bearer_token_goes_to_django(market, apps, taken):
    alice = trader_create(USDT="1000")
    order_id = alice.order(**LIMIT).json()["id"]
    assert call(apps[1], path=_cancel(order_id), headers={"Authorization": "Basic eDp5"}).status == 401
    assert call(apps[1], path=f"/api/orders/by-client-id/{order_id}/cancel", headers=bearer(alice.user)).status == 405
    assert not taken
    assert call(apps[1], path=_cancel(order_id), headers=bearer(alice.user)).status == 200
    assert len(taken) == 1


def test_a_cancel_when_no_engine_answers_503_as_the_full_path(market, apps, caplog, monkeypatch):
    alice = trader_create(USDT="1000")
    order_id = alice.order(**LIMIT).json()["id"]
    down = _unavailable()
    monkeypatch.setattr("orders.services.orders.engine_call", lambda command, *, market=None: down)
    monkeypatch.setattr("orders.services.engine_async.engine_call", lambda command, *, market=None: down)
    fast, full = both(apps, caplog, path=_cancel(order_id), headers=bearer(alice.user, **{"X-Request-ID": "c3"}))
    assert fast[0].status == 503 and fast[0].header("Retry-After") == "1"
    assert_same(fast, full)
    assert Order.objects.get(pk=order_id).status == "open"


@pytest.mark.parametrize("answer_status", [200, 404, 409])
def test_a_cancel_issues_no_statement_in_the_web_tier(market, apps, monkeypatch, answer_status):
    """The engine's answers given (as it answered them for real): the web tier sends the
    order id with the token's user and answers, no statement on any connection."""
    alice = trader_create(USDT="1000")
    order_id = alice.order(**LIMIT).json()["id"]
    real = alice.api.post(_cancel(order_id if answer_status != 404 else "999999"))
    if answer_status == 409:
        real = alice.api.post(_cancel(order_id))
    assert real.status_code == answer_status
    replayed = {"status": 200, "order_id": int(order_id), "order": real.json()}
    if answer_status != 200:
        replayed = {"status": answer_status, "error": real.json()["error"]}
    sent: list[dict[str, Any]] = []

    def engine(command: dict[str, Any], *, market: str | None = None) -> dict[str, Any]:
        sent.append(command)
        return replayed

    monkeypatch.setattr("orders.services.engine_async.engine_call", engine)
    statements = _statements(monkeypatch)
    answer = call(apps[1], path=_cancel(order_id), headers=bearer(alice.user))
    assert (answer.status, answer.json()) == (answer_status, real.json())
    assert statements == []
    assert sent == [
        {"op": "cancel", "user_id": alice.user.pk, "order_id": int(order_id), "market_id": None, "check_user": True}
    ]
