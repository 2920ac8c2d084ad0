"""JWTs that survive a rotation of the secret key: signed with SIMPLE_JWT's SIGNING_KEY (the
secret key), verified with it and then with each of SECRET_KEY_FALLBACKS, as Django does
for sessions and password reset links. simplejwt verifies with its signing key alone: a new
DJANGO_SECRET_KEY made every access and refresh token invalid at once, every bot and every
API client logged out (docs/security.md, "Rotating the secret key")."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, Token


@lru_cache(maxsize=8)
def _backend(algorithm: str, key: str, audience: Any, issuer: Any, leeway: Any, encoder: Any) -> TokenBackend:
    return TokenBackend(algorithm, key, api_settings.VERIFYING_KEY, audience, issuer, None, leeway, encoder)


def _backend_for(key: str) -> TokenBackend:
    # Read at each use: the settings change under test, and simplejwt reloads its own.
    audience = api_settings.AUDIENCE if not isinstance(api_settings.AUDIENCE, list) else tuple(api_settings.AUDIENCE)
    return _backend(
        api_settings.ALGORITHM, key, audience, api_settings.ISSUER, api_settings.LEEWAY, api_settings.JSON_ENCODER
    )


class KeyRotationTokenBackend(TokenBackend):
    """simplejwt's backend for the signing key of the moment, falling back, for a token
    whose signature that key does not verify, on SECRET_KEY_FALLBACKS (HMAC algorithms: the
    keys are the platform's secret keys)."""

    def __init__(self) -> None:  # everything is read from the settings at each use
        pass

    def get_leeway(self) -> Any:
        return _backend_for(api_settings.SIGNING_KEY).get_leeway()

    def encode(self, payload: dict[str, Any]) -> str:
        return _backend_for(api_settings.SIGNING_KEY).encode(payload)

    def decode(self, token: Token | str | bytes, verify: bool = True) -> dict[str, Any]:
        try:
            return _backend_for(api_settings.SIGNING_KEY).decode(token, verify=verify)  # type: ignore[arg-type]
        except TokenBackendExpiredToken:
            raise
        except TokenBackendError:
            if not verify or not str(api_settings.ALGORITHM).startswith("HS"):
                raise
            for fallback in getattr(settings, "SECRET_KEY_FALLBACKS", ()):
                try:
                    return _backend_for(str(fallback)).decode(token, verify=True)  # type: ignore[arg-type]
                except TokenBackendExpiredToken:
                    raise
                except TokenBackendError:
                    continue
            raise


token_backend = KeyRotationTokenBackend()


class PlatformAccessToken(AccessToken):
    """simplejwt's access token, verified by KeyRotationTokenBackend (SIMPLE_JWT's
    AUTH_TOKEN_CLASSES)."""

    _token_backend = token_backend
