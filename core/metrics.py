"""Prometheus metrics of the platform's own work (HTTP and database metrics come from
django-prometheus). Exposed at /metrics. Each process keeps its own counters."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ORDER_PLACE_SECONDS = Histogram(
    "platform_order_place_seconds",
    "Time to place and match one order (service call, including settlement).",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ORDERS_FINAL = Counter(
    "platform_orders_final_total", "Orders by the status they ended in after a request.", ["status", "reason"]
)
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
CHAIN_REACHABLE = Gauge("platform_chain_reachable", "1 when the chain node answered the last check, else 0.")
