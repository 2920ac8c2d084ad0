"""Failed-login throttling per (username, client address), shared by the JWT token
endpoint and the session login page. Backed by the cache (Redis in production)."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache

from core.cache import CACHE_ERRORS, cache_failure_log


def _key(*, username: str, client_ip: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{client_ip}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


# While the cache is down failures are not counted (fail open, logged): refusing every
# login would lock everyone out for the length of a cache outage.


def login_is_throttled(*, username: str, client_ip: str) -> bool:
    try:
        failures = int(cache.get(_key(username=username, client_ip=client_ip), 0))
    except CACHE_ERRORS as exc:
        cache_failure_log("login throttle", exc)
        return False
    return failures >= settings.LOGIN_FAILURE_LIMIT


def login_failure_record(*, username: str, client_ip: str) -> None:
    key = _key(username=username, client_ip=client_ip)
    try:
        if not cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    except CACHE_ERRORS as exc:
        cache_failure_log("login throttle", exc)


def login_failures_clear(*, username: str, client_ip: str) -> None:
    try:
        cache.delete(_key(username=username, client_ip=client_ip))
    except CACHE_ERRORS as exc:
        cache_failure_log("login throttle", exc)


def client_ip_of(meta: dict[str, object]) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return str(meta.get("REMOTE_ADDR") or "unknown")
