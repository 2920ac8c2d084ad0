"""The mark of a user's password that every token carries (`pwm`): Django's session auth
hash (an HMAC of the stored password hash keyed by SECRET_KEY), shortened. A token whose
mark no longer matches was issued before the password changed, whichever way it changed
(the admin's form, `manage.py changepassword`, a script, an UPDATE), and is refused: a
refresh token at rotation (accounts.tokens), an access token at every request (the DRF
path and the streams read the user's row anyway; the order hot path has the engine compare,
once per batch, orders.sequencer.reads). A mark made with one of SECRET_KEY_FALLBACKS is the
present password's too, as Django takes a session's hash: a rotated secret key logged every
token out."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.crypto import salted_hmac

CREDENTIALS_CLAIM = "pwm"
PASSWORD_MARK_CHARS = 20
# AbstractBaseUser.get_session_auth_hash's salt: the mark of a stored hash, computed without
# a model instance (the engine reads the column only); tests/accounts/test_credentials.py
# checks that both agree.
_SESSION_HASH_SALT = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"
_MARKS_KEPT = 10_000
_marks: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}


def password_mark(user: AbstractBaseUser) -> str:
    return user.get_session_auth_hash()[:PASSWORD_MARK_CHARS]


def _secrets() -> tuple[str, ...]:
    return (str(settings.SECRET_KEY), *(str(key) for key in settings.SECRET_KEY_FALLBACKS))


def password_marks_of_hash(password: str) -> tuple[str, ...]:
    """The marks of a user whose stored password hash is `password`, one per secret key
    (the present one first, then its fallbacks); kept: the same few hashes come back batch
    after batch."""
    secrets = _secrets()
    marks = _marks.get((password, secrets))
    if marks is None:
        if len(_marks) >= _MARKS_KEPT:
            _marks.clear()
        marks = _marks[(password, secrets)] = tuple(
            salted_hmac(_SESSION_HASH_SALT, password, secret=secret, algorithm="sha256").hexdigest()[
                :PASSWORD_MARK_CHARS
            ]
            for secret in secrets
        )
    return marks


def mark_among(claimed: object, marks: tuple[str, ...]) -> bool:
    """Whether a token's mark (`claimed`) is one of `marks` (password_marks_of_hash)."""
    return isinstance(claimed, str) and any(hmac.compare_digest(claimed, mark) for mark in marks)


def credentials_current(*, claimed: object, user: AbstractBaseUser) -> bool:
    """Whether a token's mark (`claimed`) is the user's present password's."""
    return mark_among(claimed, password_marks_of_hash(user.password))
