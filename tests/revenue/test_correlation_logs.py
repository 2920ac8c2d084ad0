"""One correlation id follows a fee end to end: the order request, its trade's post-trade
job, the revenue event, and the transaction that delivers it on-chain."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import REGISTRY

from core.logging import CorrelationIdFilter
from orders.models import Trade
from revenue.chain.runtime import chain_context_reset
from revenue.delivery.metadata import DeliveryMetadata, DeliveryStatus, status_in
from revenue.delivery.service import revenue_events_deliver
from revenue.models import RevenueEvent
from revenue.services import post_trade_jobs_process
from tests.factories import fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_lines(caplog):
    """Capture records as the JSON-lines formatter would write them."""
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(correlation_id)s %(message)s")
    caplog.handler.addFilter(CorrelationIdFilter())
    caplog.set_level(logging.INFO)

    def lines() -> list[dict]:
        return [json.loads(formatter.format(record)) for record in caplog.records]

    return lines


def test_one_correlation_id_from_order_to_transaction(
    eth_market, user, other_user, user_client, settings, json_lines, django_capture_on_commit_callbacks
):
    settings.WEB3_PROVIDER_URI = ""
    settings.CHAIN_CONFIRMATIONS = 0
    chain_context_reset()
    fund(other_user, "ETH", "1")
    from orders.engine.requests import OrderRequest
    from orders.services.orders import order_place

    order_place(
        user=other_user,
        request=OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="1", price="2000.00"),
    )
    fund(user, "USDT", "5000")
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(
            "/api/orders",
            {"market": "ETH-USDT", "side": "buy", "type": "market", "quantity": "0.5"},
            format="json",
            HTTP_X_REQUEST_ID="fee-trace-42",
        )
    assert response.status_code == 201 and response["X-Request-ID"] == "fee-trace-42"
    trade = Trade.objects.get()
    job = trade.outbox
    assert job.correlation_id == "fee-trace-42"

    post_trade_jobs_process(job_ids=[job.pk])
    event = RevenueEvent.objects.get(source_type="trade", source_id=str(trade.pk))
    assert DeliveryMetadata.of(event.metadata).correlation_id == "fee-trace-42"

    delivered_before = REGISTRY.get_sample_value("platform_revenue_deliveries_total", {"status": "delivered"}) or 0
    latency_before = REGISTRY.get_sample_value("platform_revenue_delivery_latency_seconds_count") or 0
    for _ in range(3):
        revenue_events_deliver(max_batches=1)
        event.refresh_from_db()
        if DeliveryMetadata.of(event.metadata).status == DeliveryStatus.DELIVERED:
            break
    document = DeliveryMetadata.of(event.metadata)
    assert document.status == DeliveryStatus.DELIVERED
    tx_hash = document.tx_hash
    # The delivery metrics moved with it: by status, latency, and the chain reachable.
    delivered = RevenueEvent.objects.filter(status_in(DeliveryStatus.DELIVERED)).count()
    assert REGISTRY.get_sample_value("platform_revenue_deliveries_total", {"status": "delivered"}) == (
        delivered_before + delivered
    )
    assert REGISTRY.get_sample_value("platform_revenue_delivery_latency_seconds_count") == latency_before + delivered
    assert REGISTRY.get_sample_value("platform_chain_reachable") == 1

    traced = [line for line in json_lines() if line.get("correlation_id") == "fee-trace-42"]
    messages = [line["message"] for line in traced]
    assert any("-> filled" in m for m in messages), messages  # the order's state transition
    assert any(line.get("message") == "revenue event recorded" and line.get("event_id") == event.pk for line in traced)
    assert any(line.get("message") == "post-trade job processed" for line in traced)
    delivered = [line for line in traced if line.get("tx_hash") == tx_hash and line.get("event_id") == event.pk]
    assert delivered, "the delivery line carries the fee's correlation id and the transaction hash"
    chain_context_reset()
