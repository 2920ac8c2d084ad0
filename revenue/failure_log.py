"""Delivery failures are logged per stream with a cap, as the seed did: every failure up
to 10, then every 10th up to 100, then every 100th. Critical events are not capped (they
are alerted once by revenue.alerts)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.cache import cache

from core.cache import CACHE_ERRORS, cache_failure_log

logger = logging.getLogger("revenue.delivery.failures")
COUNTER_TTL_SECONDS = 24 * 3600


def failure_should_log(count: int) -> bool:
    """Whether the `count`-th failure of a stream (1-based) is logged."""
    if count <= 10:
        return True
    if count <= 100:
        return count % 10 == 0
    return count % 100 == 0


_local_counts: dict[int, int] = {}  # while the cache is down: this process's own count


def _stream_failure_count_next(stream_id: int) -> int:
    key = f"delivery-failures:{stream_id}"
    try:
        if cache.add(key, 1, timeout=COUNTER_TTL_SECONDS):
            return 1
        try:
            return int(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=COUNTER_TTL_SECONDS)
            return 1
    except CACHE_ERRORS as exc:
        cache_failure_log("delivery failure log", exc)
        _local_counts[stream_id] = _local_counts.get(stream_id, 0) + 1
        return _local_counts[stream_id]


def delivery_failures_log(*, failures: Iterable[tuple[int, int]], error: str) -> int:
    """Log (event id, stream id) failures under the per-stream cap; returns lines written."""
    written = 0
    for event_id, stream_id in failures:
        count = _stream_failure_count_next(stream_id)
        if failure_should_log(count):
            logger.warning(
                "on-chain delivery failed (stream %s, failure #%s)",
                stream_id,
                count,
                extra={"event_id": event_id, "stream_id": stream_id, "failure_count": count, "error": error[:500]},
            )
            written += 1
    return written
