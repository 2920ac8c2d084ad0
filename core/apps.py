from django.apps import AppConfig
from django.db.backends.signals import connection_created

from core.fields import sqlite_money_functions_register
from core.money import money_context_install


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers system checks)
        from core.health import beat_healthy, beat_report, health_check_register
        from core.metrics import BeatCollector, BrokerCollector, DiskCollector, scrape_collector_register

        # Every thread of every process (web, engine, worker) computes money in one
        # context wide enough for the columns (core.money).
        money_context_install()
        connection_created.connect(sqlite_money_functions_register, dispatch_uid="core.money_text")
        # /healthz's `beat` and platform_beat_last_sent_timestamp_seconds: whether beat sends.
        health_check_register("beat", beat_report, healthy=beat_healthy)
        scrape_collector_register(BeatCollector())
        # platform_broker_up: the Celery broker, as /healthz's `broker`.
        scrape_collector_register(BrokerCollector())
        # platform_disk_free_bytes: VAR_DIR's and the metrics directory's file systems.
        scrape_collector_register(DiskCollector())
