"""Throttles.

- `ResilientScopedRateThrottle`: DRF's scoped throttle counted atomically in the shared
  cache (Redis, or the database cache), failing open while the cache is down
  (registration).
- `worker_rate_wait` / `WorkerScopedRateThrottle`: the order rate (scope "orders"), counted
  in the web process itself, without a network round trip. Semantics: DRF's sliding window
  (at most N requests of a user in any window of the rate's duration; Retry-After is DRF's
  estimate), with the history kept per process. So that the configured rate still bounds
  a user across the web processes, each process allows its share of it:
  N // ORDER_RATE_WORKERS per window (at least 1), ORDER_RATE_WORKERS being the number of
  web processes (default: WEB_WORKERS, else one per core, as config/gunicorn.py). A client whose requests all reach one
  process (one keep-alive connection) gets that share only; with ORDER_RATE_WORKERS=1 each
  process allows the whole rate and the bound across processes is workers x rate."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.cache import cache as default_cache
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

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
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        return self.count(key)

    def count(self, key: str) -> bool:
        """Counts one request under `key` (the scope's rate parsed already): whether it is
        within the rate."""
        assert self.num_requests is not None and self.duration is not None  # noqa: S101
        self.key = key
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


def shared_rate_wait(*, scope: str, ident: str) -> float | None:
    """Counts one request of `ident` in `scope` in the shared cache, in the same count as
    ResilientScopedRateThrottle's (a DRF view's requests and a page's, for one address, add
    up): None when allowed, else the seconds until the window ends. Fails open as it does."""
    throttle = ResilientScopedRateThrottle()
    throttle.scope = scope
    try:
        throttle.rate = throttle.get_rate()
        throttle.num_requests, throttle.duration = throttle.parse_rate(throttle.rate)
        if throttle.num_requests is None or throttle.duration is None:
            return None
        key = throttle.cache_format % {"scope": scope, "ident": ident}
        if throttle.count(key):
            return None
    except CACHE_ERRORS as exc:
        cache_failure_log(f"throttle {scope}", exc)
        return None
    return throttle.wait()


class _Histories:
    """Per process: (scope, ident) -> request times, newest first (DRF's layout)."""

    SWEEP_EVERY = 10_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[tuple[str, str], list[float]] = {}
        self.calls = 0

    def sweep(self, now: float, duration: int) -> None:
        """Forget users with nothing inside the window (memory stays bounded by the active ones)."""
        for key in [key for key, times in self.times.items() if not times or times[0] <= now - duration]:
            del self.times[key]


_histories = _Histories()
_parsed: dict[str, tuple[int, int]] = {}


def _rate(scope: str) -> tuple[int, int] | None:
    rate = SimpleRateThrottle.THROTTLE_RATES.get(scope)  # read at each call: tests patch the table
    if rate is None:
        return None
    parsed = _parsed.get(rate)
    if parsed is None:
        count, duration = ScopedRateThrottle().parse_rate(rate)
        parsed = _parsed[rate] = (int(count or 0), int(duration or 0))
    return parsed


def worker_rate_wait(*, scope: str, ident: str) -> float | None:
    """Counts one request of `ident` in `scope`: None when allowed, else the seconds to wait
    (the request is then not counted)."""
    rate = _rate(scope)
    if rate is None:
        return None
    count, duration = rate
    allowed = max(1, count // max(1, int(settings.ORDER_RATE_WORKERS)))
    now = SimpleRateThrottle.timer()
    with _histories.lock:
        _histories.calls += 1
        if _histories.calls % _histories.SWEEP_EVERY == 0:
            _histories.sweep(now, duration)
        history = _histories.times.setdefault((scope, ident), [])
        while history and history[-1] <= now - duration:
            history.pop()
        if len(history) >= allowed:
            remaining = duration - (now - history[-1])
            return remaining / max(1, allowed - len(history) + 1)
        history.insert(0, now)
        return None


def worker_rate_reset() -> None:
    """Forget every count (tests)."""
    with _histories.lock:
        _histories.times.clear()


class WorkerScopedRateThrottle(ScopedRateThrottle):
    """The DRF face of worker_rate_wait (the order endpoints' non-hot paths: a session's
    POST /api/orders shares the user's count with its JWT requests)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = getattr(view, self.scope_attr, None) or ""
        user = request.user
        ident = str(user.pk) if user is not None and user.is_authenticated else f"ip:{self.get_ident(request)}"
        self._wait = worker_rate_wait(scope=self.scope, ident=ident)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
