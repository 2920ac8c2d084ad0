"""The delivery gauges of /metrics (revenue/metrics.py), read from the database at scrape
time: events by status, the oldest waiting and in-flight ages, the last confirmed block,
the chain worker's heartbeat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from revenue.delivery.metadata import DeliveryStatus, Key
from revenue.metrics import DeliveryCollector
from revenue.models import ChainDeployment, DeliveryBatch, DeliveryBatchStatus, DeliveryHeartbeat, RevenueEvent
from tests.revenue.delivery_support import events_create

pytestmark = pytest.mark.django_db


def scraped(client) -> dict[str, float]:
    text = client.get("/metrics").content.decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("platform_delivery_", "platform_chain_"))
    }


def status_set(pk: int, status: DeliveryStatus, **extra: str) -> None:
    event = RevenueEvent.objects.get(pk=pk)
    event.metadata = {**event.metadata, Key.STATUS: status.value, **extra}
    event.save(update_fields=["metadata"])


def batch_create(deployment: ChainDeployment, *, status: str, submitted_at, block: int | None) -> DeliveryBatch:
    return DeliveryBatch.objects.create(
        deployment=deployment,
        size=1,
        value_wei="1",
        nonce=DeliveryBatch.objects.count(),
        gas=100_000,
        max_fee_per_gas=1,
        max_priority_fee_per_gas=1,
        status=status,
        block_number=block,
        submitted_at=submitted_at,
    )


def test_gauges_read_the_delivery_state(client) -> None:
    now = timezone.now()
    old, fresh, carried, submitted, delivered, critical = events_create(6)
    RevenueEvent.objects.filter(pk=old).update(created_at=now - timedelta(seconds=300))
    # dust carried on purpose is older still, but is not "waiting too long"
    RevenueEvent.objects.filter(pk=carried).update(created_at=now - timedelta(days=2))
    status_set(carried, DeliveryStatus.PENDING, **{Key.CARRIED_AT: now.isoformat()})
    status_set(submitted, DeliveryStatus.SUBMITTED)
    status_set(delivered, DeliveryStatus.DELIVERED)
    status_set(critical, DeliveryStatus.CRITICAL)
    deployment = ChainDeployment.objects.create(
        chain_id=31337, contract_address="0x" + "1" * 40, signer_address="0x" + "2" * 40, deployed_at=now
    )
    in_flight_since = now - timedelta(seconds=120)
    batch_create(deployment, status=DeliveryBatchStatus.SUBMITTED, submitted_at=in_flight_since, block=None)
    batch_create(deployment, status=DeliveryBatchStatus.CONFIRMED, submitted_at=now - timedelta(hours=1), block=41)
    batch_create(deployment, status=DeliveryBatchStatus.CONFIRMED, submitted_at=now - timedelta(hours=2), block=40)
    DeliveryHeartbeat.objects.update_or_create(
        pk=1,
        defaults={
            "last_run_at": now - timedelta(seconds=30),
            "last_success_at": now - timedelta(seconds=90),
            "connected": True,
            "block_number": 50,
            "finalized_block": 44,
            "signer_balance_wei": str(3 * 10**18),
            "pause_cause": "node_unreachable",
        },
    )

    gauges = scraped(client)

    assert gauges["platform_delivery_metrics_up"] == 1
    assert gauges['platform_delivery_events{status="pending"}'] == 3  # old, fresh, carried
    assert gauges['platform_delivery_events{status="submitted"}'] == 1
    assert gauges['platform_delivery_events{status="delivered"}'] == 1
    assert gauges['platform_delivery_events{status="failed"}'] == 0
    assert gauges['platform_delivery_events{status="critical"}'] == 1
    assert 300 <= gauges["platform_delivery_oldest_pending_age_seconds"] < 360
    assert 120 <= gauges["platform_delivery_oldest_submitted_age_seconds"] < 180
    assert gauges["platform_delivery_last_confirmed_block"] == 41
    last_run = (now - timedelta(seconds=30)).timestamp()
    assert gauges["platform_delivery_last_run_timestamp_seconds"] == pytest.approx(last_run)
    assert gauges['platform_delivery_paused{cause="node_unreachable"}'] == 1
    assert gauges["platform_chain_connected"] == 1
    assert gauges["platform_chain_head_block"] == 50
    assert gauges["platform_chain_finalized_block"] == 44
    assert gauges["platform_chain_signer_balance_wei"] == 3e18
    assert fresh  # the fresh pending event is counted, but is not the oldest


def test_gauges_are_zero_when_nothing_waits_and_absent_before_the_first_run(client) -> None:
    DeliveryHeartbeat.objects.all().delete()
    gauges = scraped(client)
    assert gauges["platform_delivery_oldest_pending_age_seconds"] == 0
    assert gauges["platform_delivery_oldest_submitted_age_seconds"] == 0
    assert gauges["platform_delivery_last_confirmed_block"] == 0
    assert "platform_delivery_last_run_timestamp_seconds" not in gauges


def test_a_disabled_re_drive_is_a_gauge(client) -> None:
    assert scraped(client)["platform_delivery_redrive_scheduled"] == 1
    PeriodicTask.objects.filter(task="revenue.tasks.revenue_delivery_redrive").update(enabled=False)
    assert scraped(client)["platform_delivery_redrive_scheduled"] == 0


def test_a_database_failure_is_a_gauge_not_a_failed_scrape(monkeypatch) -> None:
    def refuse(self):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(DeliveryCollector, "_read", refuse)
    metrics = list(DeliveryCollector().collect())
    assert [(m.name, m.samples[0].value) for m in metrics] == [("platform_delivery_metrics_up", 0)]
