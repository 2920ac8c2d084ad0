"""The mark of a user's password that every token carries (`pwm`): Django's session auth
hash (an HMAC of the stored password hash keyed by SECRET_KEY), shortened. A token whose
mark no longer matches was issued before the password changed, whichever way it changed
(the admin's form, `manage.py changepassword`, a script, an UPDATE), and is refused: a
refresh token at rotation (accounts.tokens), an access token at every request (the DRF
path and the streams read the user's row anyway; the order hot path has the engine compare,
once per batch, orders.sequencer.reads)."""

from __future__ import annotations

import hmac

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.crypto import salted_hmac

CREDENTIALS_CLAIM = "pwm"
PASSWORD_MARK_CHARS = 20
# AbstractBaseUser.get_session_auth_hash's salt: the mark of a stored hash, computed without
# a model instance (the engine reads the column only); tests/accounts/test_credentials.py
# checks that both agree.
_SESSION_HASH_SALT = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash"
_MARKS_KEPT = 10_000
_marks: dict[str, str] = {}


def password_mark(user: AbstractBaseUser) -> str:
    return user.get_session_auth_hash()[:PASSWORD_MARK_CHARS]


def password_mark_of_hash(password: str) -> str:
    """password_mark of a user whose stored password hash is `password` (kept: the same
    few hashes come back batch after batch)."""
    mark = _marks.get(password)
    if mark is None:
        if len(_marks) >= _MARKS_KEPT:
            _marks.clear()
        mark = _marks[password] = salted_hmac(_SESSION_HASH_SALT, password, algorithm="sha256").hexdigest()[
            :PASSWORD_MARK_CHARS
        ]
    return mark


def credentials_current(*, claimed: object, user: AbstractBaseUser) -> bool:
    """Whether a token's mark (`claimed`) is the user's present password's."""
    return isinstance(claimed, str) and hmac.compare_digest(claimed, password_mark(user))
