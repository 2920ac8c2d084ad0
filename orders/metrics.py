"""Trading's state as /metrics sees it, read at each scrape (core.metrics.scrape_collector_register;
registered in OrdersConfig.ready), not written by the processes that do the work: a dead
process writes nothing, and its absence is what the alerts are there to see.

- `platform_engine_up{shard}`: 1 when the shard's engine answered a ping, 0 when none did
  (every order of the shard answers 503 service_unavailable meanwhile; PlatformEngineDown).
- `platform_trade_outbox_pending`, `platform_trade_outbox_failing` (pending rows a job has
  already failed on) and `platform_trade_outbox_oldest_pending_age_seconds`: trades whose
  fees are not yet revenue events. The Celery worker (queue `celery`) turns each into its
  events seconds after the trade, beat's sweep catches up what a broker outage left; a
  backlog that ages means neither works, or a job fails (PlatformPostTradeBacklog). No
  revenue event exists for those trades yet, so no delivery alert could see them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from orders.models import TradeOutbox, TradeOutboxStatus
from orders.sequencer.transport import engines_report

logger = logging.getLogger(__name__)


class EngineCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "platform_engine_up",
            "1 when the shard's matching engine answered a ping from the web at this scrape, else 0.",
            labels=["shard"],
        )
        for shard, report in engines_report().items():
            up.add_metric([shard], 0.0 if report == "down" else 1.0)
        yield up


class TradeOutboxCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        try:  # the partial index trade_outbox_pending: a backlog of rows, not the table
            found = TradeOutbox.objects.filter(status=TradeOutboxStatus.PENDING).aggregate(
                pending=Count("id"), failing=Count("id", filter=Q(attempts__gt=0)), oldest=Min("created_at")
            )
        except DatabaseError:  # platform_delivery_metrics_up says the database did not answer
            logger.warning("trade outbox metrics unavailable: the database did not answer", exc_info=True)
            return
        oldest = found["oldest"]
        age = max((timezone.now() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "platform_trade_outbox_pending", "Trades whose fees are not yet revenue events.", value=found["pending"]
        )
        yield GaugeMetricFamily(
            "platform_trade_outbox_failing",
            "Of those, the trades a post-trade job has already failed on (its last_error in the admin).",
            value=found["failing"],
        )
        yield GaugeMetricFamily(
            "platform_trade_outbox_oldest_pending_age_seconds",
            "Age of the oldest trade whose fees are not yet revenue events (0: none).",
            value=age,
        )
