"""manage.py engine --shard NAME [--bind ENDPOINT]: the matching engine of one shard
(orders.sequencer.server). Start several for a shard: one leads, the others stand by."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from core.checks import PLATFORM_SETTINGS
from core.metrics import process_dead
from orders.sequencer.server import EngineServer, Watchdog
from orders.sequencer.shards import shard_named, shards


class Command(BaseCommand):
    help = "Run the matching engine (sequencer) of one shard of markets."
    # Only the platform's settings checks: Django's own (URL configuration, every model,
    # templates) import the whole web tier and took a quarter of a start that a failover
    # or a restart waits for; `manage.py check` and the web tier's deploy run them all.
    requires_system_checks = [PLATFORM_SETTINGS]

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--shard", default=None, help="shard name in ENGINE_SHARDS (default: the first)")
        parser.add_argument(
            "--bind",
            default=None,
            help="endpoint to bind when leading (default: the first of the shard's endpoints that binds here)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        shard = shard_named(options["shard"]) if options["shard"] else shards()[0]

        # Logged (JSON with LOG_FORMAT=json), at INFO whatever LOG_LEVEL (config/settings/base.py).
        announce = logging.getLogger("orders.sequencer.server").info
        seconds = settings.ENGINE_WATCHDOG_SECONDS
        server = EngineServer(
            shard=shard,
            bind=options["bind"],
            announce=announce,
            freeze_loaded=True,
            watchdog=Watchdog(seconds) if seconds > 0 else None,
        )
        signal.signal(signal.SIGTERM, lambda *_: server.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: server.stopping.set())
        serving = options["bind"] or f"the first of {', '.join(shard.endpoints)} that binds here"
        announce(f"engine {shard.name}: loading its books, standing by until it leads, then serving on {serving}")
        try:
            server.run()
        finally:
            # Its queue depth leaves /metrics with it (prometheus_client's multiprocess
            # gauges). An exit it cannot tidy up after (the watchdog's, SIGKILL) is the
            # supervisor's to mark (config.topology; gunicorn's child_exit for the web).
            process_dead(os.getpid())
