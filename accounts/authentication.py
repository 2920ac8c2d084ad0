"""JWT authentication that answers a malformed user claim with 401, never a 500."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import AUTH_HEADER_TYPE_BYTES, JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.api_keys import HEADER_KEY_META, api_key_principal_for_request
from accounts.credentials import CREDENTIALS_CLAIM, credentials_current
from core.db import quote_name, rows_select
from core.errors import ApplicationError


def is_user_id(value: object) -> bool:
    """What the platform issues: an integer id (or its decimal digits)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit())


class PlatformJWTAuthentication(JWTAuthentication):
    """simplejwt's checks, with two changes: a malformed user claim is refused (simplejwt
    looked it up as is: "abc" or a list raised a ValueError from the query, a 500, and
    1.5 matched user 1), and the user is read with a written-out statement, which runs
    on every API request (the ORM's compilation of it was 5% of an order's CPU). A request
    that also carries an API key is the key's to authenticate (ApiKeyAuthentication), as on
    the order hot path (request_principal): with both, GET /api/me answered for the token
    and POST /api/orders for the key."""

    def authenticate(self, request: Request) -> tuple[Any, Token] | None:
        if HEADER_KEY_META in request.META:
            return None
        return super().authenticate(request)

    def get_raw_token(self, header: bytes) -> bytes | None:
        return super().get_raw_token(_scheme_canonical(header))

    def get_user(self, validated_token: Token) -> Any:
        user_id = validated_token.get(api_settings.USER_ID_CLAIM)
        if not is_user_id(user_id):
            raise InvalidToken(_("Token contained no recognizable user identification"))
        found = rows_select(
            self.user_model, where=f"{quote_name(api_settings.USER_ID_FIELD)} = %s", params=[int(user_id)]
        )
        if not found:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        user = found[0]
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        claimed = validated_token.get(CREDENTIALS_CLAIM)
        # Issued before the password changed: refused (every token the platform issues has
        # the mark; one without it was never issued by a login).
        if claimed is not None and not credentials_current(claimed=claimed, user=user):
            raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        return user


class PlatformJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of the class above: simplejwt's Bearer scheme."""

    target_class = "accounts.authentication.PlatformJWTAuthentication"


# --- the caller of the order hot path, from the request's own credentials ------------------------


class CredentialsInvalid(ApplicationError):
    """The request's credentials were presented and are wrong: the same code and message as
    the DRF path (core.api.exception_handler) answers for them."""

    code = "invalid_token"
    status = 401
    default_message = "The token is invalid or expired."


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for, as its credentials say. `can_trade`: may place and cancel
    orders (a JWT always; a read-only API key will not). `credentials_mark`: the password
    mark a JWT was issued under (accounts.credentials), which the engine compares with the
    user's present one."""

    user_id: int
    scheme: str
    can_trade: bool = True
    credentials_mark: str | None = None  # a JWT's password mark, for the engine to compare


# An authentication scheme's name is case-insensitive (RFC 9110, 11.1): `bearer` is `Bearer`.
_HEADER_TYPES = {header_type.lower(): header_type for header_type in AUTH_HEADER_TYPE_BYTES}


def _scheme_canonical(header: bytes) -> bytes:
    parts = header.split(None, 1)
    canonical = _HEADER_TYPES.get(parts[0].lower()) if parts else None
    return header if canonical is None else b" ".join([canonical, *parts[1:]])


_jwt = PlatformJWTAuthentication()


def request_principal_reads(request: HttpRequest) -> bool:
    """Whether request_principal reads the database for this request: a signed API key (its
    key row). A JWT is verified from the token alone."""
    return HEADER_KEY_META in request.META


def bearer_presented(request: HttpRequest) -> bool:
    """Whether the request's Authorization header names a JWT (simplejwt's header types), so
    that the JWT authenticator answers it (a user or 401) and no other DRF authenticator is
    asked: the request is the same whatever its session."""
    header = request.META.get(api_settings.AUTH_HEADER_NAME)
    if not header:
        return False
    parts = (header.encode(HTTP_HEADER_ENCODING) if isinstance(header, str) else header).split()
    return bool(parts) and parts[0].lower() in _HEADER_TYPES


def request_principal(request: HttpRequest) -> Principal | None:
    """The caller named by the request's header credentials, verified from the credentials
    alone: a simplejwt access token's signature, type, expiry and user claim, no database
    read (the engine checks, once per batch, that the users of its commands exist and are
    active: orders.sequencer.loop). None when the request carries no such credentials (a
    session, or nobody): the DRF views decide then. Raises CredentialsInvalid (401).

    The one door for header credentials: a signed API key (accounts.api_keys, which reads
    its key row and refuses a read-only key on unsafe methods) or a JWT."""
    principal = _request_principal(request)
    if principal is not None:
        request.principal_user_id = principal.user_id  # type: ignore[attr-defined]  # the access line's user_id
    return principal


def _request_principal(request: HttpRequest) -> Principal | None:
    signed = api_key_principal_for_request(request)
    if signed is not None:
        return Principal(user_id=signed.user_id, scheme="api_key", can_trade=signed.can_trade)
    header = request.META.get(api_settings.AUTH_HEADER_NAME)
    if header is None:
        return None
    if isinstance(header, str):
        header = header.encode(HTTP_HEADER_ENCODING)  # as simplejwt reads it
    try:
        raw = _jwt.get_raw_token(header)
        if raw is None:
            return None
        user_id, mark = _token_user(raw)
        return Principal(user_id=user_id, scheme="jwt", credentials_mark=mark)
    except (InvalidToken, TokenError):
        raise CredentialsInvalid() from None
    except AuthenticationFailed:
        raise CredentialsInvalid("The credentials are not valid.") from None


# Access tokens this process verified: raw token -> (user id, the moment it expires, leeway
# included, its password mark). A client sends the same token with every request until it
# expires; its signature and claims, once verified, stay verified, and only the expiry is
# checked again (simplejwt's check was a quarter of an order's web CPU). Bounded: emptied
# when full.
_verified: dict[bytes, tuple[int, float, str | None]] = {}
VERIFIED_TOKENS_KEPT = 10_000


def _token_user(raw: bytes) -> tuple[int, str | None]:
    """The user claim and the password mark of a valid access token; raises simplejwt's
    errors or CredentialsInvalid."""
    known = _verified.get(raw)
    if known is not None and time.time() < known[1]:
        return known[0], known[2]
    token = _jwt.get_validated_token(raw)
    user_id = token.get(api_settings.USER_ID_CLAIM)
    mark = token.get(CREDENTIALS_CLAIM)
    if not is_user_id(user_id) or not (mark is None or isinstance(mark, str)):
        raise CredentialsInvalid()
    if len(_verified) >= VERIFIED_TOKENS_KEPT:
        _verified.clear()
    leeway = token.get_token_backend().get_leeway().total_seconds()
    _verified[raw] = (int(user_id), float(token["exp"]) + leeway, mark)
    return int(user_id), mark
