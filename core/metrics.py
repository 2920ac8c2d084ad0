"""Prometheus metrics of the platform's own work (HTTP and database metrics come from
django-prometheus), exposed at /metrics.

Every process that serves or counts (gunicorn workers, the engines, the Celery workers)
writes its samples to files under PROMETHEUS_MULTIPROC_DIR when that is set
(prometheus_client's multiprocess mode; `scripts/serve` sets and empties it at start), and
/metrics adds them up over every process of the host: counters only go up, whichever web
worker answers the scrape and whichever process died since (docs/operations.md,
"Health and metrics"). Without it (make run, tests) each process serves its own.

Gauges of state that lives in the database (deliveries by status, their ages, the
signer's balance, the last confirmed block) are not samples of a process: they are read
when /metrics is scraped, by collectors that apps register with
``scrape_collector_register`` (revenue.metrics), so they are right even when the worker
that would have set them is down."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_DIR_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")

ORDER_PLACE_SECONDS = Histogram(
    "platform_order_place_seconds",
    "Time to place and match one order (service call, including settlement).",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ORDERS_FINAL = Counter(
    "platform_orders_final_total", "Orders by the status they ended in after a request.", ["status", "reason"]
)
# At 0 from the start: the first order the engine fails to process must show in increase()
# (PlatformOrdersProcessingFailed; orders.sequencer.loop._processing_failed).
ORDERS_FINAL.labels(status="error", reason="processing_failed")
TRADES = Counter("platform_trades_total", "Trades executed.", ["market", "counterparty"])
FEES = Counter("platform_fees_total", "Fees charged, in the quote asset.", ["asset"])
DELIVERIES = Counter("platform_revenue_deliveries_total", "Revenue events by delivery outcome.", ["status"])
DELIVERY_LATENCY_SECONDS = Histogram(
    "platform_revenue_delivery_latency_seconds",
    "From revenue event creation to confirmed on-chain delivery.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
REDRIVE_BATCH_SIZE = Histogram(
    "platform_revenue_redrive_batch_size",
    "Events picked up per re-drive run.",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200),
)
# Set by the chain worker at each delivery cycle; across processes the latest value wins.
CHAIN_REACHABLE = Gauge(
    "platform_chain_reachable",
    "1 when the chain node answered the last check, else 0.",
    multiprocess_mode="mostrecent",
)

# --- the matching engine (orders.sequencer.loop) --------------------------------------
ENGINE_BATCH_SECONDS = Histogram(
    "platform_engine_batch_seconds",
    "Time to apply and commit one batch of engine commands (including retries).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# Where an order's time goes, seen from both ends of the web worker's round trip to the
# engine: the web worker's whole wait, and the part of it the command spent in the engine.
ENGINE_REQUEST_SECONDS = Histogram(
    "platform_engine_request_seconds",
    "A web worker's round trip to the matching engine: command sent to its answer in hand.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ENGINE_COMMAND_SECONDS = Histogram(
    "platform_engine_command_seconds",
    "A command's time in the engine: read off its socket to its answer sent (the batch in progress, then its own).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ENGINE_BATCH_COMMANDS = Histogram(
    "platform_engine_batch_commands",
    "Commands per engine batch (what was waiting on the engine's socket when it drained it).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
# Commands whose sender's wait ran out (orders.sequencer.commands.APPLY_BY): "expired",
# answered 503 unapplied; "answered_late", applied but answered after the sender's 503.
ENGINE_COMMANDS_LATE = Counter(
    "platform_engine_commands_late_total",
    "Engine commands that outlived their sender's wait: expired (not applied) or answered_late (applied).",
    ["outcome"],
)
# At 0 from the start: a series that appears with its first increment hides it from increase().
for _outcome in ("expired", "answered_late"):
    ENGINE_COMMANDS_LATE.labels(outcome=_outcome)
# Batches of stream messages an engine could not hand to the web processes (Redis or the
# ZeroMQ relay refused): their subscribers get a gap and a fresh snapshot once it works.
STREAM_BATCHES_UNPUBLISHED = Counter(
    "platform_stream_batches_unpublished_total",
    "Batches of stream messages an engine could not publish to the web processes.",
)
# The commands that were waiting when an engine's last batch began (the largest over the
# live engines in multiprocess mode). Near ENGINE_BATCH_MAX for long: an engine falls behind.
ENGINE_QUEUE_DEPTH = Gauge(
    "platform_engine_queue_depth",
    "Commands waiting at the engine when its last batch began (largest over live engines).",
    multiprocess_mode="livemax",
)

# --- the supervisor (config.topology, scripts/serve) ----------------------------------
# Written by the supervising process itself; its file sits in PROMETHEUS_MULTIPROC_DIR
# beside the others, so the web's /metrics sums it too.
PROCESS_RESTARTS = Counter(
    "platform_process_restarts_total",
    "Processes of the topology started again after they exited unasked (an engine's watchdog, a crash).",
    ["process"],
)
# A gunicorn worker that exited unasked and was replaced by its master (config/gunicorn.py).
WEB_WORKER = "web-worker"
# At 0 from the start for every Procfile line (config.topology does the same for its own).
for _process in ("web", "engine", "worker", "chain", "beat", WEB_WORKER):
    PROCESS_RESTARTS.labels(process=_process)


def multiprocess_dir() -> str | None:
    for name in MULTIPROC_DIR_VARIABLES:
        value = os.environ.get(name)
        if value:
            return value
    return None


_SCRAPE_COLLECTORS: list[Collector] = []


def scrape_collector_register(collector: Collector) -> None:
    """Add a collector read at every scrape of /metrics (state in the database). Apps
    register theirs in AppConfig.ready; registering the same one twice is a no-op."""
    if collector not in _SCRAPE_COLLECTORS:
        _SCRAPE_COLLECTORS.append(collector)


class BeatCollector(Collector):
    """`platform_beat_last_sent_timestamp_seconds`: when beat last sent a periodic task (0:
    never), read from the database at each scrape (core.health.beat_last_sent_at); alert
    PlatformBeatStalled. A database that does not answer yields nothing here
    (platform_delivery_metrics_up says so)."""

    def collect(self) -> Iterator[Metric]:
        from django.db import DatabaseError

        from core.health import beat_last_sent_at

        try:
            last = beat_last_sent_at()
        except DatabaseError:
            return
        yield GaugeMetricFamily(
            "platform_beat_last_sent_timestamp_seconds",
            "Unix time beat last sent a periodic task (written by its scheduler every 30 s); 0: never.",
            value=last.timestamp() if last is not None else 0.0,
        )


class BrokerCollector(Collector):
    """`platform_broker_up`: 1 when the Celery broker (Redis) took a connection at this
    scrape, as /healthz's `broker` (core.health.broker_reachable; up to 2 s while it does not
    answer); alert PlatformBrokerDown. Without it a broker outage paged, if at all, as
    PlatformDeliveryWorkerStalled 12 minutes later ("check the chain and beat processes"),
    or as a post-trade backlog once trades had waited 15 minutes."""

    def collect(self) -> Iterator[Metric]:
        from core.health import broker_reachable

        yield GaugeMetricFamily(
            "platform_broker_up",
            "1 when the Celery broker accepted a connection from the web at this scrape, else 0.",
            value=1.0 if broker_reachable() else 0.0,
        )


class DiskCollector(Collector):
    """`platform_disk_free_bytes{dir}` and `platform_disk_size_bytes{dir}`: the file systems of
    VAR_DIR (`var`) and of the metrics directory (`metrics`, PROMETHEUS_MULTIPROC_DIR), read
    at each scrape; alert PlatformDiskFull. Every process maps its samples' file there: once
    the file system is full, the first page a process adds to it is a SIGBUS (prometheus_client
    writes through mmap), so every engine, web and Celery worker dies, again at each restart."""

    def collect(self) -> Iterator[Metric]:
        from django.conf import settings

        directories = {"var": str(settings.VAR_DIR)}
        if (metrics := multiprocess_dir()) is not None:
            directories["metrics"] = metrics
        free = GaugeMetricFamily(
            "platform_disk_free_bytes", "Bytes free on the file system of the platform's directory.", labels=["dir"]
        )
        size = GaugeMetricFamily(
            "platform_disk_size_bytes", "Size of the file system of the platform's directory.", labels=["dir"]
        )
        for name, path in directories.items():
            try:  # a directory not made yet: the file system it will be made on
                usage = shutil.disk_usage(next(p for p in (Path(path), *Path(path).parents) if p.exists()))
            except (OSError, StopIteration):
                continue
            free.add_metric([name], float(usage.free))
            size.add_metric([name], float(usage.total))
        yield free
        yield size


class _Exposition(Collector):
    """What /metrics shows: the process samples (every process's in multiprocess mode,
    this one's otherwise) and the scrape-time collectors."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def metrics_exposition() -> bytes:
    """The Prometheus text exposition served at /metrics."""
    directory = multiprocess_dir()
    samples: Collector = MultiProcessCollector(None, path=directory) if directory else REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Exposition([samples, *_SCRAPE_COLLECTORS]))
    return generate_latest(registry)


def process_dead(pid: int) -> None:
    """A process of the host ended (gunicorn's child_exit for a web worker, the topology's
    supervisor for any process of the Procfile, the engine itself at an orderly exit): its
    live gauges (`livemax`: an engine's queue depth) are dropped, as prometheus_client
    documents for multiprocess mode; its counters and histograms stay in the sums."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
