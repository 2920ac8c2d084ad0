"""The cache (Redis in production) is an accelerator, never a point of failure.

Throttles, the failed-login counter, the delivery debounce and the failure-log cap keep
their state in the cache. When it is unreachable each of them degrades to something
safe and says so in the log, instead of failing the request or the task (a 500 on every
order while Redis restarts)."""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

logger = logging.getLogger("core.cache")

# What Django's Redis backend raises when the server is down or refuses.
CACHE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)

_WARN_EVERY_SECONDS = 10.0
_last_warning: dict[str, float] = {}


def cache_failure_log(what: str, exc: BaseException) -> None:
    """One warning per `what` every few seconds: an outage must not flood the log."""
    now = time.monotonic()
    if now - _last_warning.get(what, -_WARN_EVERY_SECONDS) >= _WARN_EVERY_SECONDS:
        _last_warning[what] = now
        logger.warning("cache unavailable (%s): %s: %s", what, type(exc).__name__, exc)
