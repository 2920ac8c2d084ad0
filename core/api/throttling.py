"""DRF throttles that let requests through while the cache is down."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from core.cache import CACHE_ERRORS, cache_failure_log


class ResilientScopedRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle that fails open: with the cache unreachable no rate can be
    counted, and refusing every request would turn a cache outage into an outage of the
    platform. The rate applies again as soon as the cache answers."""

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except CACHE_ERRORS as exc:
            cache_failure_log(f"throttle {self.scope}", exc)
            return True
