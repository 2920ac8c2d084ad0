"""The node unreachable at the worker's cycles: the heartbeat kept the last final block and
blanked the head, so the worker status read "- / 12" and the final-block gauge stayed at
12, an old number read as current. Now the page, the JSON and the metrics say the node is
unreachable and since when (the first cycle it did not answer), and show the last numbers
only as last seen, with their time."""

from __future__ import annotations

import pytest

from revenue.chain.devnode import free_port
from revenue.chain.runtime import chain_context_reset
from revenue.delivery.service import revenue_events_deliver, revenue_events_redrive
from revenue.models import DeliveryHeartbeat
from revenue.templatetags.revenue_admin import when
from revenue.worker_status import onchain_worker_status
from tests.revenue.delivery_support import events_create

pytestmark = pytest.mark.django_db


def _gauges(client) -> dict[str, float]:
    text = client.get("/metrics").content.decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("platform_chain_")
    }


@pytest.fixture
def node_lost(embedded, settings):
    """Two cycles with the node answering (a final block recorded), then two without it."""
    events_create(1)
    revenue_events_deliver(max_batches=1)
    revenue_events_redrive()
    seen = DeliveryHeartbeat.objects.get()
    assert seen.connected and seen.finalized_block is not None and seen.chain_lost_at is None
    settings.WEB3_PROVIDER_URI = f"http://127.0.0.1:{free_port()}"
    assert revenue_events_redrive().error_kind == "transient"
    first_lost = DeliveryHeartbeat.objects.get().last_run_at
    assert revenue_events_redrive().error_kind == "transient"
    return seen, first_lost


def test_the_heartbeat_says_since_when_the_node_is_unreachable_and_keeps_the_last_seen(node_lost):
    seen, first_lost = node_lost
    beat = DeliveryHeartbeat.objects.get()
    assert not beat.connected and beat.last_run_at > first_lost
    assert beat.chain_lost_at == first_lost  # the first cycle without it, not the latest
    assert beat.chain_seen_at == seen.last_run_at
    assert (beat.block_number, beat.finalized_block) == (seen.block_number, seen.finalized_block)

    status = onchain_worker_status()["chain"]
    assert (status["block_number"], status["finalized_block"]) == (None, None)  # not read as current
    assert status["unreachable_since"] == first_lost and status["last_seen_at"] == seen.last_run_at
    assert (status["last_seen_block"], status["last_seen_finalized_block"]) == (seen.block_number, seen.finalized_block)


def test_the_json_and_the_page_say_unreachable_since_rather_than_a_stale_block(node_lost, staff_client, client, staff):
    seen, first_lost = node_lost
    chain = staff_client.get("/api/admin/revenue/onchain-worker-status").json()["chain"]
    assert chain["connected"] is False and chain["finalized_block"] is None and chain["block_number"] is None
    assert chain["unreachable_since"] is not None and chain["last_seen_at"] is not None
    assert (chain["last_seen_block"], chain["last_seen_finalized_block"]) == (seen.block_number, seen.finalized_block)

    client.force_login(staff)
    page = client.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    row = page.split('id="chain-blocks">', 1)[1].split("</tr>", 1)[0]
    assert f"unknown: the node is unreachable since {when(first_lost)}" in row
    assert f"last answered {when(seen.last_run_at)}, at block {seen.block_number} / final {seen.finalized_block}" in row
    assert f"- / {seen.finalized_block}" not in page
    assert f"The chain node is unreachable since {when(first_lost)}" in page
    report = client.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert "The chain node is unreachable\n  since " in report


def test_the_metrics_drop_the_stale_blocks_and_say_since_when(node_lost, client):
    seen, first_lost = node_lost
    gauges = _gauges(client)
    assert gauges["platform_chain_connected"] == 0
    assert "platform_chain_finalized_block" not in gauges and "platform_chain_head_block" not in gauges
    assert gauges["platform_chain_unreachable_since_timestamp_seconds"] == pytest.approx(first_lost.timestamp())
    assert gauges["platform_chain_last_seen_timestamp_seconds"] == pytest.approx(seen.last_run_at.timestamp())


def test_the_node_back_clears_the_since_and_brings_the_blocks_back(node_lost, settings, client):
    settings.WEB3_PROVIDER_URI = ""
    chain_context_reset()
    assert not revenue_events_redrive().error_kind
    beat = DeliveryHeartbeat.objects.get()
    assert beat.connected and beat.chain_lost_at is None and beat.chain_seen_at == beat.last_run_at
    status = onchain_worker_status()["chain"]
    assert status["unreachable_since"] is None and status["finalized_block"] == beat.finalized_block is not None
    gauges = _gauges(client)
    assert gauges["platform_chain_finalized_block"] == beat.finalized_block
    assert "platform_chain_unreachable_since_timestamp_seconds" not in gauges
