from django.apps import AppConfig

CHAIN_HEALTHY = frozenset({"ok", "embedded"})


class RevenueConfig(AppConfig):
    name = "revenue"
    verbose_name = "Revenue"

    def ready(self) -> None:
        from core.health import health_check_register
        from core.metrics import scrape_collector_register
        from orders.signals import trades_committed
        from revenue.chain_status import chain_health
        from revenue.metrics import DeliveryCollector
        from revenue.services import post_trade_jobs_announced

        # orders announces committed trades; it never imports revenue.
        trades_committed.connect(post_trade_jobs_announced, dispatch_uid="revenue.post_trade_jobs")
        # Delivery gauges, read from the database at each scrape of /metrics.
        scrape_collector_register(DeliveryCollector())
        # /healthz (core) reports the chain node: "ok", or "embedded" in the worker, is healthy.
        health_check_register("chain", chain_health, healthy=CHAIN_HEALTHY.__contains__)
