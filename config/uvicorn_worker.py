"""The web process's worker under gunicorn: uvicorn (ASGI) with the platform's limits."""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker


class PlatformUvicornWorker(UvicornWorker):
    # As scripts/run's uvicorn: no Server header, stream messages of at most 64 KiB; Django
    # has no lifespan handler (uvicorn would log that it "appears unsupported" at each start).
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "server_header": False,
        "ws_max_size": 65536,
        "lifespan": "off",
    }
