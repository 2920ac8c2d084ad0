"""Throttles, and the rate-limit headers of the answers they count.

- `ResilientScopedRateThrottle`: DRF's scoped throttle counted atomically in the shared
  cache (Redis, or the database cache), failing open while the cache is down
  (registration).
- `worker_rate_count` / `WorkerScopedRateThrottle`: the order rate (scope "orders"), counted
  in the web process itself, without a network round trip. Semantics: DRF's sliding window
  (at most N requests of a user in any window of the rate's duration; Retry-After is DRF's
  estimate), with the history kept per process. So that the configured rate still bounds
  a user across the web processes, each process allows its share of it:
  N // ORDER_RATE_WORKERS per window (at least 1), ORDER_RATE_WORKERS being the number of
  web processes (default: WEB_WORKERS, else one per core, as config/gunicorn.py). A client whose requests all reach one
  process (one keep-alive connection) gets that share only; with ORDER_RATE_WORKERS=1 each
  process allows the whole rate and the bound across processes is workers x rate.
- `RateLimit`: what a count leaves the client, sent on every answer to a request that was
  counted as `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
  (draft-ietf-httpapi-ratelimit-headers), from the count that decided it: no second read
  of the counter. DRF views get them from `RateLimitHeaders`; the order endpoints' hot and
  fast paths (orders.api.hot) set them on the answers they build."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache as default_cache
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from core.cache import CACHE_ERRORS, cache_failure_log

# Cache entries outlive their window by this much (real seconds), so that a process whose
# clock is a little behind still finds the window it counts in.
_SLACK_SECONDS = 60


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One count's outcome, as the client is told it (draft-ietf-httpapi-ratelimit-headers).

    `limit`: the requests a window allows (for the order rates, this web process's share,
    the count that decides). `remaining`: how many more this window allows now (0 when
    refused). `reset`: seconds, rounded up, until quota comes back: the end of the window
    (a fixed window), or the moment the oldest counted request leaves it (a sliding window,
    one more request then allowed). `retry_after`: set when the request was refused, the
    Retry-After the 429 carries; `reset` then names the same moment, as the draft asks."""

    limit: int
    remaining: int
    reset: int
    retry_after: int | None = None

    @property
    def allowed(self) -> bool:
        return self.retry_after is None

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }

    def apply(self, response: HttpResponseBase) -> None:
        """Sets the three headers on `response` (after those it has)."""
        for name, value in self.headers().items():
            response[name] = value


def _refused(*, limit: int, wait: float) -> RateLimit:
    retry_after = int(wait) + 1  # as the exception handler announces DRF's wait
    return RateLimit(limit=limit, remaining=0, reset=retry_after, retry_after=retry_after)


def _seconds(wait: float) -> int:
    return max(0, math.ceil(wait))


_REQUEST_ATTRIBUTE = "rate_limit"


def request_rate_limit(request: HttpRequest | Request) -> RateLimit | None:
    """The count a throttle made of `request` (the most restrictive one when several did)."""
    rate: RateLimit | None = getattr(request, _REQUEST_ATTRIBUTE, None)
    return rate


def _request_rate_limit_set(request: Request, rate: RateLimit) -> None:
    http: HttpRequest = request._request
    current = request_rate_limit(http)
    if current is None or (current.allowed and (not rate.allowed or rate.remaining < current.remaining)):
        setattr(http, _REQUEST_ATTRIBUTE, rate)


class RateLimitHeaders:
    """An APIView mixin (before APIView in the bases): every answer to a request a throttle
    counted carries the count's RateLimit headers, the 429 with its Retry-After included.
    A request refused before the throttles run (authentication, permission) was not
    counted and has none, nor has a request let through with the cache down (nothing was
    counted). `throttled_methods`: the methods the throttle classes count (None: all)."""

    throttled_methods: frozenset[str] | None = None

    def get_throttles(self) -> list[Any]:
        request = self.request  # type: ignore[attr-defined]
        if self.throttled_methods is not None and request.method not in self.throttled_methods:
            return []
        throttles: list[Any] = super().get_throttles()  # type: ignore[misc]
        return throttles

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        rate = request_rate_limit(request)
        if rate is not None:
            rate.apply(response)
        return response


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
        allowed = self.count(key)
        _request_rate_limit_set(request, self.rate_limit())
        return allowed

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
        self.counted = count
        return count <= self.num_requests

    def rate_limit(self) -> RateLimit:
        """What the last count() leaves the client (no further cache access)."""
        assert self.num_requests is not None  # noqa: S101
        wait = self._left()
        if self.counted > self.num_requests:
            return _refused(limit=self.num_requests, wait=wait)
        return RateLimit(limit=self.num_requests, remaining=self.num_requests - self.counted, reset=_seconds(wait))

    def _left(self) -> float:
        """Seconds left in the window, within 0 and its duration: another process may have
        opened the window a moment after this one read its clock (its start is then a
        little after this `now`)."""
        assert self.duration is not None  # noqa: S101
        return min(float(self.duration), max(0.0, self.window_start + self.duration - self.now))

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
        """Whole seconds left in the window: DRF's Throttled rounds up and the exception
        handler adds one, so the 429's Retry-After is int(left) + 1, its RateLimit-Reset
        (and what the registration page announces: shared_rate_wait)."""
        if self.duration is None:
            return None
        return float(int(self._left()))


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


def operation_throttled(view_class: type, method: str) -> bool:
    """Whether the throttle classes of `view_class` count `method` (the OpenAPI schema)."""
    if not getattr(view_class, "throttle_classes", None):
        return False
    methods: frozenset[str] | None = getattr(view_class, "throttled_methods", None)
    return methods is None or method.upper() in methods


def operation_rate_limit_headers(view_class: type, method: str) -> bool:
    """Whether the answers of `method` on `view_class` carry the RateLimit headers."""
    return issubclass(view_class, RateLimitHeaders) and operation_throttled(view_class, method)


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


def worker_rate_count(*, scope: str, ident: str) -> RateLimit | None:
    """Counts one request of `ident` in `scope`: None when the scope has no rate, else the
    count's outcome (refused: `retry_after` set, and the request is not counted)."""
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
            # DRF's estimate, which with a full history is when the oldest request leaves.
            remaining = duration - (now - history[-1])
            return _refused(limit=allowed, wait=remaining / max(1, allowed - len(history) + 1))
        history.insert(0, now)
        return RateLimit(limit=allowed, remaining=allowed - len(history), reset=_seconds(history[-1] + duration - now))


def worker_rate_reset() -> None:
    """Forget every count (tests)."""
    with _histories.lock:
        _histories.times.clear()


class WorkerScopedRateThrottle(ScopedRateThrottle):
    """The DRF face of worker_rate_count (the order endpoints' non-hot paths: a session's
    POST /api/orders shares the user's count with its JWT requests)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = getattr(view, self.scope_attr, None) or ""
        user = request.user
        ident = str(user.pk) if user is not None and user.is_authenticated else f"ip:{self.get_ident(request)}"
        self._rate = worker_rate_count(scope=self.scope, ident=ident)
        if self._rate is None:
            return True
        _request_rate_limit_set(request, self._rate)
        return self._rate.allowed

    def wait(self) -> float | None:
        # DRF's Throttled rounds up and the handler adds one: retry_after - 1 announces retry_after.
        return None if self._rate is None or self._rate.retry_after is None else float(self._rate.retry_after - 1)
