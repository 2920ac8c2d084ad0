"""DRF throttles counted atomically in the shared cache, and that let requests through
while the cache is down."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache as default_cache
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from core.cache import CACHE_ERRORS, cache_failure_log

# Cache entries outlive their window by this much (real seconds), so that a process whose
# clock is a little behind still finds the window it counts in.
_SLACK_SECONDS = 60


class ResilientScopedRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle as a counter that holds across processes and under concurrency.

    DRF's throttle keeps a list of request times in the cache and writes it back after
    reading it: two workers answering at once both read the same list and one write is
    lost, so a burst over several gunicorn workers gets through well above the rate. Here a
    window opens at the first request (`cache.add` of its start: only one process wins) and
    every request increments the window's counter (`cache.incr`: atomic in Redis, in
    core.cache.AtomicDatabaseCache and, within a process, in the memory cache): exactly
    `num_requests` requests per window pass, however many processes answer. When a window
    is over, the next request opens the next one; `Retry-After` is what is left of the
    window.

    It fails open: with the cache unreachable no rate can be counted, and refusing every
    request would turn a cache outage into an outage of the platform. The rate applies
    again as soon as the cache answers."""

    cache = default_cache

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return self._allow(request, view)
        except CACHE_ERRORS as exc:
            cache_failure_log(f"throttle {self.scope}", exc)
            return True

    def _allow(self, request: Request, view: Any) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if self.rate is None or self.num_requests is None or self.duration is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        self.window_start = self._window_start(self.key, now=self.now, duration=self.duration)
        counter = f"{self.key}:n:{self.window_start!r}"
        ttl = int(self.duration) + _SLACK_SECONDS
        self.cache.add(counter, 0, ttl)
        try:
            count = int(self.cache.incr(counter))
        except ValueError:  # expired between add and incr (a window this old is over anyway)
            self.cache.add(counter, 1, ttl)
            count = 1
        return count <= self.num_requests

    def _window_start(self, key: str, *, now: float, duration: int) -> float:
        """The start of the window `now` falls in. The first request of a window adds its
        start; a request after the window names the next one once for every process
        (`cache.add` of the successor of a start: the first one wins, the others read it)."""
        ttl = int(duration) + _SLACK_SECONDS
        current = f"{key}:start"
        self.cache.add(current, now, ttl)
        start = self.cache.get(current)
        if start is None:  # evicted between add and get
            self.cache.add(current, now, ttl)
            start = self.cache.get(current, now)
        while now >= float(start) + duration:
            successor = f"{key}:after:{start!r}"
            self.cache.add(successor, now, ttl)
            following = self.cache.get(successor, now)
            self.cache.set(current, following, ttl)
            start = following
        return float(start)

    def wait(self) -> float | None:
        if self.duration is None:
            return None
        return max(0.0, self.window_start + self.duration - self.now)
