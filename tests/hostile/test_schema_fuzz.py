"""Schema fuzzing (issue 10): schemathesis loads the OpenAPI schema served at /api/schema/
from Django's WSGI application, in process on the test database, and sends every operation
its examples, its coverage cases (boundaries, missing and malformed parameters and bodies,
unexpected methods) and Hypothesis-generated valid and invalid requests. Normal operations
are called with the JWT of a funded user (ETH-USDT and BTC-USDT exist, TTX is configured),
staff operations (/api/admin/...) with a staff JWT.

Every response must pass schemathesis's `not_a_server_error`, `status_code_conformance`,
`content_type_conformance` and `response_schema_conformance`: no 5xx, and the status, the
content type and the body are the ones the schema documents (the error envelope included).

The whole schema is one pytest item (a lazy schema, each operation a subtest), so that the
request count stays in one process under xdist: its fixture's teardown writes
var/hostile/schemathesis.json (requests, operations, statuses) and fails the run when fewer
than 1,000 requests were sent. Deterministic: a fixed schemathesis seed and derandomized
Hypothesis."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import StaffFactory, UserFactory, fund, market_create

MIN_REQUESTS = 1000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REPORT = Path(django_settings.VAR_DIR) / "hostile" / "schemathesis.json"


@dataclass
class FuzzStats:
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)


@pytest.fixture
def fuzz_stats() -> Iterator[FuzzStats]:
    stats = FuzzStats()
    yield stats
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {
                "requests": stats.requests,
                "operations": len(stats.operations),
                "requests_per_operation": dict(sorted(stats.operations.items())),
                "statuses": dict(sorted(stats.statuses.items())),
            },
            indent=2,
        )
    )
    if stats.requests < MIN_REQUESTS:
        pytest.fail(f"only {stats.requests} requests were sent, fewer than {MIN_REQUESTS}")


@dataclass
class Tokens:
    user: str
    staff: str


@pytest.fixture
def tokens(db: Any) -> Tokens:
    market_create("ETH-USDT")
    market_create("BTC-USDT", reference_price="60000.00")
    user: Any = UserFactory()
    fund(user, "USDT", "100000")
    fund(user, "ETH", "50")
    fund(user, "BTC", "2")
    fund(user, "TTX", "1500")  # a configured platform: the personal flywheel figures exist
    staff: Any = StaffFactory()
    return Tokens(
        user=str(RefreshToken.for_user(user).access_token), staff=str(RefreshToken.for_user(staff).access_token)
    )


@pytest.fixture
def wsgi_app(db: Any) -> Iterator[Any]:
    """Django's real WSGI application on the test database. Like Django's test client, it must
    not close the connection after each request: on PostgreSQL that would end the test's
    transaction (SQLite's in-memory database ignores the close)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(request: pytest.FixtureRequest, wsgi_app: Any, tokens: Tokens, fuzz_stats: FuzzStats) -> Any:
    # schemathesis 4.32's lazy loader reads Node._nodeid, which pytest 9 replaced with a property.
    request.node._nodeid = request.node.nodeid
    config = schemathesis.Config.from_dict({"seed": 10, "generation": {"with-security-parameters": False}})
    loaded = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app, config=config)

    @loaded.hook
    def after_call(context: Any, case: Any, response: Any) -> None:
        fuzz_stats.requests += 1
        fuzz_stats.statuses[str(response.status_code)] += 1
        fuzz_stats.operations[case.operation.label] += 1

    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@settings(max_examples=40, deadline=None, derandomize=True)
@schema.parametrize()
def test_every_operation_conforms(case: Any, tokens: Tokens) -> None:
    token = tokens.staff if case.path.startswith("/api/admin/") else tokens.user
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
