"""gunicorn's configuration for the production topology (Procfile: `gunicorn -c
config/gunicorn.py config.asgi:application`): gunicorn manages the processes, each an
ASGI uvicorn worker (HTTP plus the WebSocket streams at /ws/v1, docs/streams.md). From the
environment:

- WEB_BIND (default 127.0.0.1:$PORT, PORT 8000), WEB_WORKERS (one per core:
  config.processes), WEB_THREADS (1),
  WEB_TIMEOUT (30 s), WEB_GRACEFUL_TIMEOUT (30 s: requests in progress at SIGTERM finish);
- LOG_FORMAT / LOG_LEVEL: gunicorn's own lines as every other process logs
  (core.logging.logging_config); each request is logged by Django with its correlation id
  (core.middleware.CorrelationIdMiddleware, logger `core.requests`), so gunicorn's and
  uvicorn's access lines are off unless WEB_ACCESS_LOG=1;
- PROMETHEUS_MULTIPROC_DIR: a worker that exits has its live gauges dropped from /metrics
  (its counters stay counted)."""

from __future__ import annotations

import os
from typing import Any

from config.processes import web_workers
from config.uvicorn_worker import web_access_log
from core.logging import logging_config
from core.metrics import PROCESS_RESTARTS, WEB_WORKER, process_dead
from core.ports import web_bind

bind = web_bind()
workers = web_workers()
threads = int(os.environ.get("WEB_THREADS") or 1)  # unused by the ASGI worker (one event loop)
worker_class = "config.uvicorn_worker.PlatformUvicornWorker"
timeout = int(os.environ.get("WEB_TIMEOUT") or 30)
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT") or 30)
accesslog = "-" if web_access_log() else None
errorlog = "-"
capture_output = True  # what a worker prints goes through the log, not around it
# No runtime control socket: its default path is per user, shared by every gunicorn of the host.
control_socket_disable = True
_level = os.environ.get("LOG_LEVEL") or "INFO"
logconfig_dict = logging_config(
    log_format=os.environ.get("LOG_FORMAT") or "text",
    level=_level,
    loggers={
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        # gunicorn logs access lines whenever a logging configuration is given: only on request
        "gunicorn.access": {"level": "INFO" if accesslog else "WARNING", "handlers": ["console"], "propagate": False},
    },
)


def child_exit(server: Any, worker: Any) -> None:
    process_dead(worker.pid)
    # A worker that exits while gunicorn still listens did not exit for a stop (a stop closes
    # the listeners first): killed (out of memory), crashed, or ended by WEB_TIMEOUT. gunicorn
    # starts another at once, so the supervisor never sees it: counted like its restarts,
    # PlatformProcessRestarting fires on a web worker's crash loop (before, an ERROR line only).
    if server.LISTENERS:
        PROCESS_RESTARTS.labels(process=WEB_WORKER).inc()
