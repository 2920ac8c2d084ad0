"""Signing requests in tests as a bot would (docs/api.md): one helper."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from rest_framework.test import APIClient


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes = b"") -> str:
    """Written out here, independently of accounts.api_keys, as a client would."""
    message = timestamp.encode() + method.encode() + path.encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    key: str, secret: str, method: str, path: str, body: bytes = b"", *, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(now_ms() if timestamp is None else timestamp)
    return {
        "HTTP_X_API_KEY": key,
        "HTTP_X_API_TIMESTAMP": stamp,
        "HTTP_X_API_SIGNATURE": sign(secret, stamp, method, path, body),
    }


def signed_request(
    client: APIClient,
    key: str,
    secret: str,
    method: str,
    path: str,
    payload: Any = None,
    *,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    body = b"" if payload is None else json.dumps(payload).encode()
    sent = headers or signed_headers(key, secret, method, path, body, timestamp=timestamp)
    call = getattr(client, method.lower())
    if payload is None:
        return call(path, **sent)
    return call(path, data=body, content_type="application/json", **sent)
