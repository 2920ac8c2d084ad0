"""DRF authentication by signed API-key requests: accounts.api_keys does the verifying."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.api_keys import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, api_key_principal_for_request


class ApiKeyAuthentication(BaseAuthentication):
    """`request.user` is the key's owner and `request.auth` the ApiKeyPrincipal. A request
    without X-API-KEY is left to the other authentications; a bad one is refused with the
    contract's 401/403 (ApplicationError, turned into the envelope by the one handler)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        principal = api_key_principal_for_request(request._request)
        if principal is None:
            return None
        return principal.user, principal

    def authenticate_header(self, request: Request) -> str:
        return "X-API-KEY"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The three headers in the OpenAPI schema: one requirement with all of them."""

    target_class = "accounts.api_key_auth.ApiKeyAuthentication"
    name = ["ApiKey", "ApiKeyTimestamp", "ApiKeySignature"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": HEADER_KEY,
                "description": "The key's public identifier (POST /api/keys). docs/api.md shows a signed request.",
            },
            {"type": "apiKey", "in": "header", "name": HEADER_TIMESTAMP, "description": "Unix time in milliseconds."},
            {
                "type": "apiKey",
                "in": "header",
                "name": HEADER_SIGNATURE,
                "description": "Lowercase hex HMAC-SHA256, with the secret, of"
                " timestamp + METHOD + path_with_query + body.",
            },
        ]
