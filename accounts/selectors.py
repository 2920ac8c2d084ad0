from __future__ import annotations

import unicodedata
from importlib import import_module

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from accounts.credentials import credentials_current
from accounts.models import ApiKey
from accounts.usernames import username_fold


def api_key_list_for_user(*, user_id: int) -> list[ApiKey]:
    """The caller's API keys, newest first; the secrets are not read."""
    return list(ApiKey.objects.filter(user_id=user_id).defer("secret_encrypted").order_by("-id"))


def username_for_login(*, typed: str) -> str:
    """The account a login names: the name as typed when an account has it, else the one
    account whose name differs from it only in case or width ("ALICE" for "alice": the
    registration refuses a second such name, accounts.usernames), else as typed."""
    model = get_user_model()
    if model.objects.filter(username=typed).exists():
        return typed
    folded = username_fold(typed)
    plain = unicodedata.normalize("NFKC", typed).strip()
    alike = [
        name
        for name in model.objects.filter(username__iexact=plain).values_list("username", flat=True)[:2]
        if username_fold(name) == folded
    ]
    return alike[0] if len(alike) == 1 else typed


def user_has_admin_history(*, user_id: int) -> bool:
    """Whether the account made changes in the admin: its rows of the admin's History
    (LogEntry), which go with the account if it is deleted."""
    return LogEntry.objects.filter(user_id=user_id).exists()


def user_is_system_account(*, username: str) -> bool:
    """The platform's own accounts in the ledger (orders.system_accounts: the house and the
    fee account, by these usernames): they cannot log in, and nobody edits them as a user."""
    return username in (settings.HOUSE_USERNAME, settings.FEE_ACCOUNT_USERNAME)


def user_still_signed_in(
    *, user_id: int, session_key: str | None, credentials_mark: str | None = None, api_key_id: int | None = None
) -> bool:
    """Whether a connection signed in as `user_id` may still act as that user: the user
    exists and is active and, for a page's session (`session_key`), that session still
    exists, still names the user, and was made under the user's present password (Django's
    own check at each request: logging out, or changing the password, ends it); for a token,
    its password mark (`credentials_mark`) is still the user's; for an API key
    (`api_key_id`), the key still exists (deleting it ends it)."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    if api_key_id is not None:
        return ApiKey.objects.filter(pk=api_key_id, user_id=user_id).exists()
    if session_key is None:
        return credentials_mark is None or credentials_current(claimed=credentials_mark, user=user)
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    if str(session.get(SESSION_KEY)) != str(user_id):
        return False
    # Django's own check: the present secret key's hash, or a fallback's (a rotation).
    claimed = str(session.get(HASH_SESSION_KEY, ""))
    hashes = (user.get_session_auth_hash(), *user.get_session_auth_fallback_hash())
    return any(constant_time_compare(claimed, known) for known in hashes)
