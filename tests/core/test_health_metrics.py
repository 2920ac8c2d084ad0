from __future__ import annotations

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_healthz_reports_each_dependency(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == "ok"  # the test broker is in-memory
    assert body["chain"] == "embedded"
    assert body["status"] == "ok"


@override_settings(WEB3_PROVIDER_URI="http://127.0.0.1:9")
def test_healthz_reports_an_unreachable_chain(client):
    body = client.get("/healthz").json()
    assert body["chain"] == "down"
    assert body["status"] == "degraded"


def test_metrics_exposes_prometheus_text(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests_total_by_view_transport_method_total" in response.content


def test_revenue_split_must_sum_to_one():
    from decimal import Decimal

    from core.checks import revenue_split_check

    with override_settings(REVENUE_HOLDER_PERCENTAGE=Decimal("0.2"), REVENUE_RESERVE_PERCENTAGE=Decimal("0.85")):
        assert [e.id for e in revenue_split_check(None)] == ["core.E002"]
    with override_settings(REVENUE_HOLDER_PERCENTAGE=Decimal("1.5"), REVENUE_RESERVE_PERCENTAGE=Decimal("-0.5")):
        assert {e.id for e in revenue_split_check(None)} == {"core.E001"}
    assert revenue_split_check(None) == []
