"""Services of JWT refresh tokens: issued per login, rotated atomically, revoked by family.

simplejwt's rotation checked the blacklist, then blacklisted the token with get_or_create:
twelve concurrent refreshes of one token passed the check together and each got a new,
independent, renewable token. Here the blacklist row is the claim: inserting it is what
spends a token, the database's unique constraint lets exactly one insert through, and the
new pair is issued in the same transaction. Every other presenter of that token (a
concurrent duplicate, or a replay later) gets 401 and revokes the token's whole family:
every refresh token descended from the same login is blacklisted (OAuth 2.1, refresh token
rotation with reuse detection). Access tokens already issued live out their short lifetime
(JWT_ACCESS_MINUTES)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, User
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import BlacklistMixin, RefreshToken, Token
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts.authentication import is_user_id
from accounts.credentials import CREDENTIALS_CLAIM, credentials_current, password_mark
from accounts.errors import InvalidToken
from accounts.jwt import PlatformAccessToken, token_backend
from accounts.models import RefreshTokenFamily

logger = logging.getLogger(__name__)

FAMILY_CLAIM = "fam"
STORED_DIGEST_PREFIX = "sha256:"


def token_stored_form(raw: str) -> str:
    """What an outstanding-token row keeps of a refresh token: its digest, never the JWT.
    Nothing reads the column back (spending and revoking go by jti), and the JWT itself is
    a login for its lifetime to whoever reads the table (a backup, a leaked dump)."""
    return STORED_DIGEST_PREFIX + hashlib.sha256(raw.encode()).hexdigest()


class FamilyRefreshToken(RefreshToken):
    """simplejwt's refresh token with a family claim. Decoding checks the signature, the
    expiry and the type, not the blacklist: whether the token is still unspent is decided
    once, by inserting its blacklist row (token_pair_rotate, token_logout). Verified with
    the secret key, then its fallbacks (accounts.jwt)."""

    _token_backend = token_backend
    access_token_class = PlatformAccessToken

    def verify(self) -> None:
        Token.verify(self)

    @classmethod
    def for_user_in_family(cls, user: AbstractBaseUser, *, family: str | None) -> FamilyRefreshToken:
        # simplejwt's claims (Token.for_user), then the outstanding-token row it would
        # write, with the family claim already in the stored token.
        token = super(BlacklistMixin, cls).for_user(user)
        jti = token[api_settings.JTI_CLAIM]
        token[FAMILY_CLAIM] = family or jti
        token[CREDENTIALS_CLAIM] = password_mark(user)
        outstanding = OutstandingToken.objects.create(
            user=cast(User, user),
            jti=jti,
            token=token_stored_form(str(token)),
            created_at=token.current_time,
            expires_at=datetime_from_epoch(token["exp"]),
        )
        RefreshTokenFamily.objects.create(token=outstanding, family=token[FAMILY_CLAIM])
        return token

    @property
    def family(self) -> str:
        # Tokens issued before families existed are a family of their own.
        return str(self.get(FAMILY_CLAIM) or self[api_settings.JTI_CLAIM])


def _decoded(raw: str) -> FamilyRefreshToken:
    try:
        return FamilyRefreshToken(raw)  # type: ignore[arg-type]
    except TokenError as exc:
        raise InvalidToken() from exc


def _pair(token: RefreshToken) -> dict[str, str]:
    return {"access": str(token.access_token), "refresh": str(token)}


def _spend(token: FamilyRefreshToken, *, user: AbstractBaseUser | None) -> None:
    """Blacklists the token; IntegrityError when it was spent already (the unique
    constraint on the blacklist decides between concurrent presenters)."""
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=token[api_settings.JTI_CLAIM],
        defaults={
            "user": cast(User | None, user),
            "token": token_stored_form(str(token)),
            "created_at": token.current_time,
            "expires_at": datetime_from_epoch(token["exp"]),
        },
    )
    BlacklistedToken.objects.create(token=outstanding)


def token_family_revoke(*, family: str) -> int:
    """Blacklists every refresh token of the family that is not blacklisted yet."""
    with transaction.atomic():
        live = (
            OutstandingToken.objects.filter(Q(refresh_family__family=family) | Q(jti=family))
            .filter(blacklistedtoken__isnull=True)
            .values_list("pk", flat=True)
        )
        revoked = BlacklistedToken.objects.bulk_create(
            [BlacklistedToken(token_id=pk) for pk in live], ignore_conflicts=True
        )
    return len(revoked)


def _reuse(token: FamilyRefreshToken) -> InvalidToken:
    revoked = token_family_revoke(family=token.family)
    logger.warning(
        "refresh token presented again: its family is revoked",
        extra={"family": token.family, "user_id": token.get(api_settings.USER_ID_CLAIM), "revoked": revoked},
    )
    return InvalidToken()


def token_pair_issue(*, user: AbstractBaseUser) -> dict[str, str]:
    """A login: the first token of a new family."""
    with transaction.atomic():
        return _pair(FamilyRefreshToken.for_user_in_family(user, family=None))


def _active_user(token: FamilyRefreshToken) -> AbstractBaseUser:
    user_id = token.get(api_settings.USER_ID_CLAIM)
    user = get_user_model().objects.filter(pk=int(user_id)).first() if is_user_id(user_id) else None
    if user is None or not api_settings.USER_AUTHENTICATION_RULE(user):
        raise InvalidToken()
    # Issued before the password last changed (or before tokens carried the mark): refused.
    if not credentials_current(claimed=token.get(CREDENTIALS_CLAIM), user=user):
        logger.info("refresh token issued before a password change refused", extra={"user_id": user.pk})
        raise InvalidToken()
    return user


def token_pair_rotate(*, refresh: str) -> dict[str, str]:
    """Spends `refresh` and returns the next pair of its family. Exactly one of any number
    of concurrent calls with one token succeeds; the others, and any later call with it,
    get 401 and revoke the family."""
    token = _decoded(refresh)
    user = _active_user(token)
    try:
        with transaction.atomic(durable=True):
            _spend(token, user=user)
            return _pair(FamilyRefreshToken.for_user_in_family(user, family=token.family))
    except IntegrityError:
        raise _reuse(token) from None


def token_logout(*, refresh: str) -> None:
    """Ends the session of `refresh`: its family is revoked. A token that was already
    spent is a reuse (401), and revokes the family all the same."""
    token = _decoded(refresh)
    try:
        with transaction.atomic(durable=True):
            _spend(token, user=None)
    except IntegrityError:
        raise _reuse(token) from None
    token_family_revoke(family=token.family)


def refresh_tokens_expired_delete() -> int:
    """Deletes the rows of refresh tokens past their expiry (outstanding, with their
    blacklist and family rows): every login and every rotation adds rows, and nothing else
    removes them. An expired token is refused by its own `exp` before any row is read, and
    its family's live tokens keep rows of their own, so reuse detection is unchanged."""
    deleted, _ = OutstandingToken.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


def refresh_tokens_revoke(*, user_ids: Iterable[int] | QuerySet[Any]) -> int:
    """Blacklists every live refresh token of these users: the number revoked (a token
    blacklisted meanwhile by a logout or a rotation is no conflict)."""
    live = list(
        OutstandingToken.objects.filter(
            user_id__in=user_ids, expires_at__gte=timezone.now(), blacklistedtoken__isnull=True
        ).values_list("pk", flat=True)
    )
    if not live:
        return 0
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token_id=pk) for pk in live], ignore_conflicts=True)
    return len(live)
