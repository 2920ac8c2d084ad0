"""Delivery gauges for Prometheus, read from the database when /metrics is scraped
(core.metrics.scrape_collector_register; registered in RevenueConfig.ready).

Read at scrape time rather than set by the chain worker: when that worker or beat is
down, the ages keep growing and the last run keeps ageing, which is what the alerts
(monitoring/alerts.yml) are there to see. Chain figures (head, final block, signer
balance) are the worker's last heartbeat: `platform_delivery_last_run_timestamp_seconds`
says how fresh they are."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from django.db import DatabaseError
from django.db.models import Max, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from revenue.delivery.metadata import DeliveryStatus, not_carried, status_in
from revenue.models import DeliveryBatch, DeliveryBatchStatus, DeliveryHeartbeat, RevenueEvent
from revenue.worker_status import delivery_status_counts, redrive_schedule

logger = logging.getLogger(__name__)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age(now: datetime, moment: datetime | None) -> float:
    return 0.0 if moment is None else max((now - moment).total_seconds(), 0.0)


def _timestamp(moment: datetime | None) -> float:
    return 0.0 if moment is None else moment.timestamp()


class DeliveryCollector(Collector):
    """Revenue events by delivery status, the oldest waiting and in-flight ages, the
    heartbeat of the chain worker and what it last read from the chain."""

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = list(self._read())
        except DatabaseError:
            logger.warning("delivery metrics unavailable: the database did not answer", exc_info=True)
            yield _gauge("platform_delivery_metrics_up", "1 when the delivery state could be read.", 0)
            return
        yield _gauge("platform_delivery_metrics_up", "1 when the delivery state could be read.", 1)
        yield from metrics

    def _read(self) -> Iterator[Metric]:
        now = timezone.now()
        events = GaugeMetricFamily(
            "platform_delivery_events",
            "Revenue events by on-chain delivery status (disjoint: they add up to the events).",
            labels=["status"],
        )
        for status, count in delivery_status_counts().items():
            events.add_metric([status], count)
        yield events

        oldest_pending = (
            RevenueEvent.objects.filter(status_in(DeliveryStatus.PENDING) & not_carried())
            .aggregate(oldest=Min("created_at"))
            .get("oldest")
        )
        yield _gauge(
            "platform_delivery_oldest_pending_age_seconds",
            "Age of the oldest revenue event waiting to be sent (dust carried on purpose excluded); 0 when none.",
            _age(now, oldest_pending),
        )
        batches = DeliveryBatch.objects.filter(status=DeliveryBatchStatus.SUBMITTED, foreign=False).aggregate(
            oldest=Min("submitted_at")
        )
        yield _gauge(
            "platform_delivery_oldest_submitted_age_seconds",
            "Age of the oldest delivery transaction sent and not yet confirmed; 0 when none.",
            _age(now, batches["oldest"]),
        )
        confirmed = DeliveryBatch.objects.filter(status=DeliveryBatchStatus.CONFIRMED).aggregate(
            block=Max("block_number")
        )
        yield _gauge(
            "platform_delivery_last_confirmed_block",
            "Block of the latest confirmed delivery transaction; 0 before the first.",
            float(confirmed["block"] or 0),
        )

        yield _gauge(
            "platform_delivery_redrive_scheduled",
            "1 when beat's re-drive task exists and is enabled (retries and confirmations depend on it).",
            1.0 if redrive_schedule()[1] else 0.0,
        )
        beat = DeliveryHeartbeat.objects.filter(pk=1).first()
        if beat is None:
            return  # the chain worker never ran: no heartbeat gauges (alert PlatformDeliveryWorkerNeverRan)
        yield _gauge(
            "platform_delivery_last_run_timestamp_seconds",
            "Unix time of the chain worker's last delivery or re-drive cycle.",
            _timestamp(beat.last_run_at),
        )
        yield _gauge(
            "platform_delivery_last_success_timestamp_seconds",
            "Unix time of the chain worker's last cycle that ended without error.",
            _timestamp(beat.last_success_at),
        )
        paused = GaugeMetricFamily(
            "platform_delivery_paused", "1 while delivery is paused by an operator-level fault.", labels=["cause"]
        )
        paused.add_metric([beat.pause_cause or "none"], 1.0 if beat.pause_cause else 0.0)
        yield paused
        yield _gauge(
            "platform_delivery_signer_balance_low",
            "1 when the signer holds less gas than DELIVERY_LOW_BALANCE_BATCHES batches need.",
            1.0 if beat.low_balance_alerted_at else 0.0,
        )
        yield _gauge(
            "platform_chain_connected", "1 when the node answered the chain worker's last cycle.", float(beat.connected)
        )
        if beat.signer_balance_wei:
            yield _gauge(
                "platform_chain_signer_balance_wei",
                "The delivery signer's balance at the chain worker's last cycle, in wei.",
                float(int(beat.signer_balance_wei)),
            )
        # The head and the final block only as read by the last cycle: with the node
        # unreachable the heartbeat keeps them as last seen, and the final block read on as
        # if current (the head went blank beside it). Since when the node answers no more
        # is a gauge of its own.
        if beat.chain_seen_at is not None:
            yield _gauge(
                "platform_chain_last_seen_timestamp_seconds",
                "Unix time of the chain worker's last cycle the node answered.",
                _timestamp(beat.chain_seen_at),
            )
        if not beat.connected:
            if beat.chain_lost_at is not None:
                yield _gauge(
                    "platform_chain_unreachable_since_timestamp_seconds",
                    "Unix time of the chain worker's first cycle the node did not answer (absent while it answers).",
                    _timestamp(beat.chain_lost_at),
                )
            return
        if beat.block_number is not None:
            yield _gauge(
                "platform_chain_head_block", "The chain head at the chain worker's last cycle.", beat.block_number
            )
        if beat.finalized_block is not None:
            yield _gauge(
                "platform_chain_finalized_block",
                "The final block at the chain worker's last cycle (absent while the node is unreachable).",
                beat.finalized_block,
            )
