from django.apps import AppConfig


def engines_healthy(engines: dict[str, str]) -> bool:
    return all(engine != "down" for engine in engines.values())


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Trading"

    def ready(self) -> None:
        # Imported once the apps are loaded (the sequencer's modules import models).
        from django.core import checks

        from core.health import health_check_register, serve_check_register
        from core.metrics import scrape_collector_register
        from orders.checks import engine_shards_check, engine_shards_problems
        from orders.metrics import EngineCollector, TradeOutboxCollector
        from orders.sequencer.transport import engines_report

        # /healthz (core) reports each engine; one down leaves the platform degraded.
        health_check_register("engines", engines_report, healthy=engines_healthy)
        # platform_engine_up{shard} and the trade outbox's backlog, read at each scrape of /metrics.
        scrape_collector_register(EngineCollector())
        scrape_collector_register(TradeOutboxCollector())
        # ENGINE_SHARDS that cannot give each market one engine: refused at start.
        checks.register(engine_shards_check)
        serve_check_register("engine_shards", engine_shards_problems)
