"""JWT authentication that answers a malformed user claim with 401, never a 500."""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token


def _is_user_id(value: object) -> bool:
    """What the platform issues: an integer id (or its decimal digits)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit())


class PlatformJWTAuthentication(JWTAuthentication):
    def get_user(self, validated_token: Token) -> Any:
        # simplejwt looks the claim up as is: "abc" or a list raised a ValueError from the
        # query (a 500), and 1.5 matched user 1.
        if not _is_user_id(validated_token.get(api_settings.USER_ID_CLAIM)):
            raise InvalidToken("Token contained no recognizable user identification")
        return super().get_user(validated_token)


class PlatformJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of the class above: simplejwt's Bearer scheme."""

    target_class = "accounts.authentication.PlatformJWTAuthentication"
