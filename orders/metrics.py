"""The engines as /metrics sees them, asked at each scrape (core.metrics.scrape_collector_register;
registered in OrdersConfig.ready): `platform_engine_up{shard}`, 1 when the shard's engine
answered a ping, 0 when none did. Read by the web, not written by the engine: a dead engine
writes nothing, and no engine leading a shard is what the alert PlatformEngineDown is
there to see (every order of the shard answers 503 service_unavailable meanwhile)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from orders.sequencer.transport import engines_report


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
