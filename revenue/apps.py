from django.apps import AppConfig


class RevenueConfig(AppConfig):
    name = "revenue"
    verbose_name = "Revenue"

    def ready(self) -> None:
        from orders.signals import trades_committed
        from revenue.services import post_trade_jobs_announced

        # orders announces committed trades; it never imports revenue.
        trades_committed.connect(post_trade_jobs_announced, dispatch_uid="revenue.post_trade_jobs")
