"""Signed requests with API keys: the one place where a request signed by a bot is verified.

A signed request carries three headers (shared/spec/api.md, "API keys and signed requests"):

    X-API-KEY        the key's public identifier
    X-API-TIMESTAMP  Unix time in milliseconds
    X-API-SIGNATURE  lowercase hex HMAC-SHA256, with the key's secret, of
                     timestamp + METHOD + path_with_query + body

`api_key_request_principal(method=, path_with_query=, body=, headers=)` verifies one and
answers who is calling (`ApiKeyPrincipal`), or raises the contract's error: 401
`invalid_api_key`, `invalid_signature`, `signature_expired` (more than
API_SIGNATURE_WINDOW_MS from the server's clock, either way), `replayed_request`; 403
`api_key_read_only` for an unsafe method with a key without `trade`. It answers None for a
request without X-API-KEY (another authentication may apply). Both the DRF authentication
class (accounts.api_key_auth) and plain Django views call it.

The order of the checks: the key, then the signature (so that nobody without the secret
learns anything about timestamps or replays), then the clock, then the replay claim (last,
so that a refused request never uses up a signature).

Secrets at rest: an HMAC can only be verified with the secret itself, so it cannot be
hashed; it is encrypted with Fernet (AES-128-CBC + HMAC-SHA256, `cryptography`). The
encryption key is API_KEY_ENCRYPTION_KEYS when set (comma-separated, the first encrypts,
all decrypt: rotation), else derived from SECRET_KEY (and SECRET_KEY_FALLBACKS, which
decrypt) with HMAC-SHA256 under a purpose label. Changing SECRET_KEY without keeping the
old one in SECRET_KEY_FALLBACKS invalidates every API key (invalid_signature).

Replays: a signature is claimed once, atomically, in a store shared by every process:
the cache when it is shared (Redis: `cache.add` is SET NX; without Redis the embedded
default's cache table, core.cache.AtomicDatabaseCache), else (a per-process cache) the
database table ApiSignatureSeen, whose primary key makes the claim atomic. A cache outage
falls back to the database: replay refusal never fails open. Claims expire by the store's
own clock (Redis's, the database's), never a web host's: a host whose clock ran ahead freed
the claims of the others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now
from django.http import HttpRequest
from django.utils import timezone

from accounts.errors import ApiKeyReadOnly, InvalidApiKey, InvalidSignature, ReplayedRequest, SignatureExpired
from accounts.models import PERMISSION_TRADE, ApiKey, ApiSignatureSeen
from core.cache import CACHE_ERRORS, cache_failure_log

logger = logging.getLogger(__name__)

HEADER_KEY = "X-API-KEY"
# Its key in a Django request's META: `HEADER_KEY in request.headers` without building
# request.headers from every META entry (the order hot path asks it for each request).
HEADER_KEY_META = "HTTP_" + HEADER_KEY.upper().replace("-", "_")
HEADER_TIMESTAMP = "X-API-TIMESTAMP"
HEADER_SIGNATURE = "X-API-SIGNATURE"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KEY_LENGTH_BYTES = 16  # the public key: 32 hex characters
KEY_MAX_LENGTH = 64
SECRET_LENGTH_BYTES = 32  # the secret: 64 hex characters, 256 bits
_TIMESTAMP_MAX_DIGITS = 15
_ENCRYPTION_PURPOSE = b"accounts.api_keys secret encryption v1"
# How stale last_used_at may be: it is written at most once per this many seconds per key.
LAST_USED_PRECISION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ApiKeyPrincipal:
    """Who a signed request speaks for: the key's owner, through the key, with its permissions."""

    user: AbstractBaseUser
    key_id: int
    permissions: frozenset[str]
    # core.api.permissions refuses delegated credentials on staff endpoints without
    # importing accounts (apps depend one way).
    is_delegated: bool = True

    @property
    def user_id(self) -> int:
        return int(self.user.pk)

    @property
    def can_trade(self) -> bool:
        return PERMISSION_TRADE in self.permissions


# --- Secrets at rest ---------------------------------------------------------------


def _derived_key(material: str) -> bytes:
    digest = hmac.new(material.encode(), _ENCRYPTION_PURPOSE, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=4)
def _fernet_for(materials: tuple[str, ...], derive: bool) -> MultiFernet:
    keys = [_derived_key(m) if derive else m.encode() for m in materials]
    return MultiFernet([Fernet(key) for key in keys])


def _fernet(*, present_only: bool = False) -> MultiFernet:
    """Read at each call (settings change under test; production sets SECRET_KEY late).
    `present_only`: the key that encrypts, without the older ones that still decrypt."""
    configured = [k.strip() for k in getattr(settings, "API_KEY_ENCRYPTION_KEYS", []) if k.strip()]
    if configured:
        return _fernet_for(tuple(configured[:1] if present_only else configured), False)
    materials = (str(settings.SECRET_KEY), *(str(k) for k in getattr(settings, "SECRET_KEY_FALLBACKS", [])))
    return _fernet_for(materials[:1] if present_only else materials, True)


def secret_encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def secret_decrypt(token: str) -> str | None:
    """The secret, or None when no configured key opens it (SECRET_KEY changed)."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return None


def secret_reencrypted(token: str) -> str | None:
    """`token` encrypted again with the present key, when only an older one (a fallback of
    SECRET_KEY, a later one of API_KEY_ENCRYPTION_KEYS) opens it; None when the present key
    opens it already, or when no configured key does (then nothing can be done here)."""
    try:
        _fernet(present_only=True).decrypt(token.encode())
        return None
    except InvalidToken:
        pass
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        return None


def key_material_new() -> tuple[str, str]:
    """A fresh (public key, secret) pair."""
    return secrets.token_hex(KEY_LENGTH_BYTES), secrets.token_hex(SECRET_LENGTH_BYTES)


# --- Signing --------------------------------------------------------------------------


def request_signature(*, secret: str, timestamp: str, method: str, path_with_query: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of timestamp + METHOD + path_with_query + body: what a
    client sends as X-API-SIGNATURE (docs/api.md has the same in Python and curl)."""
    message = timestamp.encode() + method.upper().encode() + path_with_query.encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _window_ms() -> int:
    return int(settings.API_SIGNATURE_WINDOW_MS)


# --- Replays ---------------------------------------------------------------------------


def _cache_is_shared() -> bool:
    backend = str(settings.CACHES["default"]["BACKEND"])
    return not backend.endswith(("LocMemCache", "DummyCache"))


def _replay_store() -> str:
    store = str(getattr(settings, "API_REPLAY_STORE", "auto"))
    if store == "auto":
        return "cache" if _cache_is_shared() else "database"
    return store


def _claim_in_database(*, claim: str, ttl_seconds: int) -> bool:
    # The database's clock, one for every web host: a host whose clock ran ahead deleted,
    # as expired by its clock, the claims other hosts had just made, and their signatures,
    # still within their window there, were accepted again.
    expires = ExpressionWrapper(Now() + timedelta(seconds=ttl_seconds), output_field=DateTimeField())
    try:
        with transaction.atomic():
            ApiSignatureSeen.objects.create(signature=claim, expires_at=expires)
    except IntegrityError:
        return False
    # Expired claims go as new ones arrive: a few rows at a time, on an indexed column.
    ApiSignatureSeen.objects.filter(expires_at__lt=Now()).delete()
    return True


def signature_claim(*, key_id: int, signature: str) -> bool:
    """True the first time this key presents this signature within its window, False
    after; atomic across processes (see the module docstring)."""
    claim = f"{key_id}:{signature}"
    # A timestamp is accepted up to the window on either side of the server's clock, so a
    # signature stays usable for twice the window; the claim outlives that.
    ttl_seconds = 2 * _window_ms() // 1000 + 2
    if _replay_store() == "cache":
        try:
            return bool(cache.add(f"api-signature:{claim}", 1, timeout=ttl_seconds))
        except CACHE_ERRORS as exc:
            cache_failure_log("api key replay store", exc)
    return _claim_in_database(claim=claim, ttl_seconds=ttl_seconds)


# --- Verification ------------------------------------------------------------------------


def _last_used_touch(api_key: ApiKey, now: datetime) -> None:
    """At most one write per key per LAST_USED_PRECISION: a conditional UPDATE, no read."""
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_PRECISION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)


def api_key_request_principal(
    *, method: str, path_with_query: str, body: bytes, headers: Mapping[str, str]
) -> ApiKeyPrincipal | None:
    """Verify a signed request (module docstring). `path_with_query` is the path as the
    client sent it, with its query string (`request.get_full_path()`); `body` the raw
    bytes; `headers` any mapping of header names (case-insensitive) to values. None when
    the request carries no X-API-KEY."""
    key = _header(headers, HEADER_KEY)
    if key is None:
        return None
    well_formed = 0 < len(key) <= KEY_MAX_LENGTH and key.isascii() and key.isalnum()
    api_key = ApiKey.objects.select_related("user").filter(key=key).first() if well_formed else None
    if api_key is None or not api_key.user.is_active:
        raise InvalidApiKey()
    timestamp = _header(headers, HEADER_TIMESTAMP) or ""
    signature = _header(headers, HEADER_SIGNATURE) or ""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _TIMESTAMP_MAX_DIGITS):
        raise InvalidSignature("X-API-TIMESTAMP must be the Unix time in milliseconds (digits only).")
    secret = secret_decrypt(api_key.secret_encrypted)
    if secret is None:
        logger.error("api key secret cannot be decrypted (SECRET_KEY changed?)", extra={"api_key_id": api_key.pk})
        raise InvalidSignature()
    presented = signature.encode("utf-8", "replace")
    if not any(
        hmac.compare_digest(
            request_signature(
                secret=secret, timestamp=timestamp, method=method, path_with_query=target, body=body
            ).encode(),
            presented,
        )
        for target in _targets_signed(path_with_query)
    ):
        raise InvalidSignature()
    off_ms = int(timestamp) - time.time_ns() // 1_000_000
    if abs(off_ms) > _window_ms():
        # How far off and which way, and the window configured (it said "5 seconds" whatever
        # API_SIGNATURE_WINDOW_MS was): a bot's operator sees at once that its clock is wrong.
        raise SignatureExpired(
            f"X-API-TIMESTAMP is {abs(off_ms) / 1000:.1f} s {'ahead of' if off_ms > 0 else 'behind'} the "
            f"server's clock, more than {_window_ms() / 1000:g} s (GET /api/time)."
        )
    principal = ApiKeyPrincipal(
        user=api_key.user,
        key_id=api_key.pk,
        permissions=frozenset(api_key.permissions),
    )
    if method.upper() not in SAFE_METHODS and not principal.can_trade:
        raise ApiKeyReadOnly()
    if not signature_claim(key_id=api_key.pk, signature=signature):
        raise ReplayedRequest()
    _last_used_touch(api_key, timezone.now())
    return principal


def _targets_signed(path_with_query: str) -> tuple[str, ...]:
    """The request targets a client may have signed for `path_with_query`: with an empty
    query, with or without its "?" (`/api/trades?`: curl sends the "?", uvicorn drops it
    before the application sees the target, and Python's requests drops it before sending).
    The same resource either way."""
    if path_with_query.endswith("?"):
        return path_with_query, path_with_query[:-1]
    if "?" not in path_with_query:
        return path_with_query, path_with_query + "?"
    return (path_with_query,)


def request_target(request: HttpRequest) -> str:
    """The path and query as the client sent them: the raw request target when the server
    passes it on (gunicorn's RAW_URI, an ASGI server's raw_path), else Django's rebuilt one,
    which is the same for every path without percent-encoded reserved characters."""
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return raw
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict) and isinstance(scope.get("raw_path"), bytes):
        query = scope.get("query_string") or b""
        return (scope["raw_path"] + (b"?" + query if query else b"")).decode("latin-1")
    return request.get_full_path()


# Where a request keeps the principal its signature was verified for.
_VERIFIED_ATTRIBUTE = "_api_key_principal"


def api_key_principal_for_request(request: HttpRequest) -> ApiKeyPrincipal | None:
    """`api_key_request_principal` for a Django request (a plain view, or DRF's own),
    verified once per request: a second look (POST /api/orders' hot path, then the DRF view
    it leaves a body it does not take to) gets the same principal, where verifying again
    would find the signature claimed by the first and refuse it as replayed."""
    if HEADER_KEY_META not in request.META:
        return None
    verified: ApiKeyPrincipal | None = getattr(request, _VERIFIED_ATTRIBUTE, None)
    if verified is not None:
        return verified
    principal = api_key_request_principal(
        method=request.method or "GET",
        path_with_query=request_target(request),
        body=request.body,
        headers=request.headers,
    )
    setattr(request, _VERIFIED_ATTRIBUTE, principal)
    return principal
