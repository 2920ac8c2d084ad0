from __future__ import annotations

import pytest
from django.test import override_settings

from core import health

pytestmark = pytest.mark.django_db


def test_healthz_reports_each_dependency(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == "ok"  # the test broker is in-memory
    assert body["chain"] == "embedded"
    assert body["status"] == "ok"


def test_healthz_writes_core_s_checks_then_the_registered_ones_in_name_order(client):
    # The answer as it was when core.views imported the chain and engine checks itself.
    response = client.get("/healthz")
    assert list(response.json()) == ["status", "database", "broker", "chain", "engines"]
    assert response.content == (
        b'{"status": "ok", "database": "ok", "broker": "ok", "chain": "embedded", "engines": {"inprocess": "ok"}}'
    )


def test_a_registered_check_that_fails_degrades_the_platform(client, monkeypatch):
    monkeypatch.setitem(health._checks, "cache", health.HealthCheck("cache", lambda: "down", lambda v: v == "ok"))
    response = client.get("/healthz")
    assert response.status_code == 200  # only the database down is a 503
    assert response.json()["cache"] == "down" and response.json()["status"] == "degraded"


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


def test_metrics_count_orders_trades_fees_and_latency(client, user, other_user, django_capture_on_commit_callbacks):
    from orders.engine.requests import OrderRequest
    from orders.services.orders import order_place
    from tests.factories import fund, market_create

    def value(text: str, line_start: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))

    market_create("ETH-USDT")
    fund(other_user, "ETH", "1")
    fund(user, "USDT", "5000")
    latency = 'platform_order_place_seconds_count{type="market"}'
    fee_line = 'platform_fees_total{asset="USDT"}'
    before = client.get("/metrics").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        sell = OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="1", price="2000.00")
        order_place(user=other_user, request=sell)
        order_place(user=user, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="0.5"))
    after = client.get("/metrics").content.decode()

    assert value(after, latency) == value(before, latency) + 1
    assert value(after, 'platform_orders_final_total{reason="",status="filled"}') >= 1
    assert value(after, 'platform_trades_total{counterparty="book",market="ETH-USDT"}') >= 1
    assert abs(value(after, fee_line) - value(before, fee_line) - (1.2 + 0.8)) < 1e-9  # 12 + 8 bps of 1,000
