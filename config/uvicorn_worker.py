"""The web process's worker under gunicorn: uvicorn (ASGI) with the platform's limits."""

from __future__ import annotations

import os
from typing import Any

from uvicorn_worker import UvicornWorker

from config.http_protocol import CoalescingHttpToolsProtocol


def web_access_log() -> bool:
    """WEB_ACCESS_LOG: the server's own access lines (each request is logged by Django's
    side anyway, with its correlation id: core.middleware.access_log)."""
    return os.environ.get("WEB_ACCESS_LOG", "").lower() in {"1", "true", "yes", "on"}


def web_writes_coalesced() -> bool:
    """WEB_WRITES_COALESCED (on unless "0"/"off"...): each answer's head and body written
    together, one TCP segment instead of two (config.http_protocol, docs/performance.md)."""
    return os.environ.get("WEB_WRITES_COALESCED", "1").lower() not in {"0", "false", "no", "off"}


class PlatformUvicornWorker(UvicornWorker):
    # As scripts/run's uvicorn: no Server header, stream messages of at most 64 KiB; Django
    # has no lifespan handler (uvicorn would log that it "appears unsupported" at each start).
    # access_log: off unless asked (uvicorn builds each line's arguments, the path quoted,
    # whenever its logger has a handler, even one whose level drops the line).
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "server_header": False,
        "ws_max_size": 65536,
        "lifespan": "off",
        "access_log": web_access_log(),
        "http": CoalescingHttpToolsProtocol if web_writes_coalesced() else "httptools",
    }
