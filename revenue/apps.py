from django.apps import AppConfig


class RevenueConfig(AppConfig):
    name = "revenue"
    verbose_name = "Revenue"

    def ready(self) -> None:
        from core.metrics import scrape_collector_register
        from orders.signals import trades_committed
        from revenue.metrics import DeliveryCollector
        from revenue.services import post_trade_jobs_announced

        # orders announces committed trades; it never imports revenue.
        trades_committed.connect(post_trade_jobs_announced, dispatch_uid="revenue.post_trade_jobs")
        # Delivery gauges, read from the database at each scrape of /metrics.
        scrape_collector_register(DeliveryCollector())
