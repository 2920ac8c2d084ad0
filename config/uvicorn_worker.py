"""The web process's worker under gunicorn: uvicorn (ASGI) with the platform's limits."""

from __future__ import annotations

import os
from typing import Any

from uvicorn_worker import UvicornWorker


def web_access_log() -> bool:
    """WEB_ACCESS_LOG: the server's own access lines (each request is logged by Django's
    side anyway, with its correlation id: core.middleware.access_log)."""
    return os.environ.get("WEB_ACCESS_LOG", "").lower() in {"1", "true", "yes", "on"}


class PlatformUvicornWorker(UvicornWorker):
    # As scripts/run's uvicorn: no Server header, stream messages of at most 64 KiB; Django
    # has no lifespan handler (uvicorn would log that it "appears unsupported" at each start).
    # access_log: off unless asked (uvicorn builds each line's arguments, the path quoted,
    # whenever its logger has a handler, even one whose level drops the line).
    # proxy_headers: off. uvicorn would believe X-Forwarded-For / -Proto from gunicorn's
    # forwarded_allow_ips (loopback by default) and rewrite the peer and the scheme before
    # Django runs: TRUSTED_PROXIES alone decides (core.middleware, docs/security.md).
    # UvicornWorker applies these kwargs last: they win over its own.
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "server_header": False,
        "ws_max_size": 65536,
        "lifespan": "off",
        "access_log": web_access_log(),
        "proxy_headers": False,
    }
