"""Failed-login throttling per (username, client address), shared by the JWT token
endpoint and the session login page. Backed by the cache (Redis in production)."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _key(*, username: str, client_ip: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{client_ip}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


def login_is_throttled(*, username: str, client_ip: str) -> bool:
    return int(cache.get(_key(username=username, client_ip=client_ip), 0)) >= settings.LOGIN_FAILURE_LIMIT


def login_failure_record(*, username: str, client_ip: str) -> None:
    key = _key(username=username, client_ip=client_ip)
    if not cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_failures_clear(*, username: str, client_ip: str) -> None:
    cache.delete(_key(username=username, client_ip=client_ip))


def client_ip_of(meta: dict[str, object]) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return str(meta.get("REMOTE_ADDR") or "unknown")
