from __future__ import annotations

import logging
import re
import unicodedata

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import AbstractBaseUser, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from accounts.api_keys import key_material_new, secret_encrypt, secret_reencrypted
from accounts.errors import (
    ApiKeyFormResent,
    ApiKeyNotFound,
    InvalidCredentials,
    PasswordResetThrottled,
    PasswordResetUnavailable,
    RegistrationThrottled,
    TooManyApiKeys,
    UsernameTaken,
    WeakPassword,
    WrongPassword,
)
from accounts.login_throttle import (
    login_failure_record,
    login_failures_clear,
    login_refusal_check,
    login_throttle_check,
)
from accounts.models import PERMISSION_READ, PERMISSION_TRADE, ApiKey, UsernameKey
from accounts.selectors import user_is_system_account, username_for_login
from accounts.tasks import password_reset_mail_send
from accounts.tokens import refresh_tokens_revoke
from accounts.usernames import username_key, username_mixes_scripts
from core.api.throttling import shared_rate_wait
from core.cache import form_once
from core.errors import InvalidInput, ServiceUnavailable
from core.networks import client_bucket

logger = logging.getLogger(__name__)

USERNAME_TAKEN = "This username is already taken."


def username_keys_claim() -> None:
    """Keys for accounts created without registering (the admin, createsuperuser,
    seed_demo) or renamed since: one query when there is nothing to do. Two such accounts
    whose names read alike keep one key between them, which is what blocks a third."""
    user_model = get_user_model()
    stale = list(user_model.objects.exclude(username_key__username=F("username")).values_list("pk", "username"))
    if not stale:
        return
    UsernameKey.objects.filter(user_id__in=[pk for pk, _ in stale]).delete()
    UsernameKey.objects.bulk_create(
        [UsernameKey(user_id=pk, username=name, key=username_key(name)) for pk, name in stale], ignore_conflicts=True
    )


# The rate of registrations per client address (REGISTER_RATE_LIMIT), one count for every
# door: POST /api/auth/register (its DRF throttle) and the /register page.
REGISTER_RATE_SCOPE = "register"


def client_address(*, request: HttpRequest) -> str:
    """Who a rate per address counts: REMOTE_ADDR, which core.middleware.TrustedProxyMiddleware
    has set to the client behind a trusted proxy (a client-sent X-Forwarded-For is not it),
    an IPv6 address by its /64 (core.networks.client_bucket)."""
    return client_bucket(str(request.META.get("REMOTE_ADDR") or "unknown"))


def user_register_rate_check(*, address: str) -> None:
    """Counts one registration attempt from `address`; RegistrationThrottled (429, with
    Retry-After) beyond the rate. The page calls it; the API's throttle is the same count."""
    wait = shared_rate_wait(scope=REGISTER_RATE_SCOPE, ident=address)
    if wait is not None:
        raise RegistrationThrottled(retry_after=int(wait) + 1)


@transaction.atomic(durable=True)
def user_register(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    """A new trader. The name is stored NFKC-normalised; one whose key (case, width and
    lookalike characters folded: accounts.usernames) is taken is refused, and so is one
    that mixes scripts."""
    user_model = get_user_model()
    username = unicodedata.normalize("NFKC", username)
    if username_mixes_scripts(username):
        raise InvalidInput(fields={"username": ["Use letters of one script (do not mix, say, Latin and Cyrillic)."]})
    key = username_key(username)
    if key in {username_key(settings.HOUSE_USERNAME), username_key(settings.FEE_ACCOUNT_USERNAME)}:
        # The platform's own accounts, made when first needed (orders.system_accounts finds them
        # by name): a trader registered under one before that would become the house or the fee account.
        raise UsernameTaken(fields={"username": [USERNAME_TAKEN]})
    username_keys_claim()
    if UsernameKey.objects.filter(key=key).exists() or user_model.objects.filter(username__iexact=username).exists():
        raise UsernameTaken(fields={"username": [USERNAME_TAKEN]})
    candidate = user_model(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise WeakPassword(fields={"password": list(exc.messages)}) from exc
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
            UsernameKey.objects.create(user=candidate, username=username, key=key)
    except IntegrityError as exc:  # a concurrent registration of the same (or a lookalike) name won
        raise UsernameTaken(fields={"username": [USERNAME_TAKEN]}) from exc
    logger.info("user registered", extra={"user_id": candidate.pk})
    return candidate


def user_authenticate(*, request: HttpRequest, username: str, password: str) -> AbstractBaseUser:
    """Check credentials under the failed-login policy (accounts.login_throttle): 429 while
    this username or this address is locked out, 401 for wrong credentials. The name may
    differ from the account's in case or width (username_for_login). The platform's
    own accounts (the house, the fee account) never log in, whatever their password."""
    user = authenticate(request, username=username_for_login(typed=username), password=password)
    if user is not None and user_is_system_account(username=user.get_username()):
        user = None
    if user is None:
        login_refusal_check(request=request, username=username)
        logger.warning("failed login", extra={"username": username[:150], "client_ip": request.META.get("REMOTE_ADDR")})
        raise InvalidCredentials()
    login_failures_clear(request=request, username=username)
    return user


API_KEY_PERMISSION_LISTS = ([PERMISSION_READ], [PERMISSION_READ, PERMISSION_TRADE])
API_KEY_LABEL_MAX_LENGTH = 64
# A label: 1 to 64 characters, none of them a control, format (bidi, zero-width) or
# private-use character. The same expression is the OpenAPI schema's pattern (lengths apart);
# lone surrogates (JSON allows "\\ud800") are refused too: they are not text.
API_KEY_LABEL_PATTERN = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u061c\\u180e\\u200b-\\u200f\\u2028-\\u202e"
    "\\u2060-\\u206f\\ufeff\\ufff9-\\ufffb\\ue000-\\uf8ff]+$"
)
API_KEY_LABEL = re.compile(API_KEY_LABEL_PATTERN)


def user_password_confirm(*, request: HttpRequest, user: AbstractBaseUser, password: str) -> None:
    """A page asks for the password again before a sensitive change (creating an API key):
    under the failed-login policy (accounts.login_throttle's hook for doors that check a
    secret themselves): 429 while locked out, 401 and one failure counted on a mismatch."""
    username = user.get_username()
    login_throttle_check(request=request, username=username)
    if not user.check_password(password):
        login_failure_record(request=request, username=username)
        logger.warning("wrong password confirmation", extra={"user_id": user.pk})
        raise WrongPassword(fields={"password": ["Wrong password."]})


def user_password_change(*, request: HttpRequest, user: User, password: str, new_password: str) -> None:
    """The trader's own password, changed: the present one confirmed first (under the
    failed-login policy, as user_password_confirm), the new one under the password rules.
    Every session and token issued before ends with it (Django's session hash, the tokens'
    password mark: accounts.credentials); the caller keeps its own page session
    (update_session_auth_hash). API keys are not passwords: they keep working."""
    user_password_confirm(request=request, user=user, password=password)
    if new_password == password:
        raise WeakPassword(fields={"new_password": ["Choose a password other than the present one."]})
    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        raise WeakPassword(fields={"new_password": list(exc.messages)}) from exc
    user.set_password(new_password)
    user.save(update_fields=["password"])
    logger.info("password changed", extra={"user_id": user.pk})


# Names of rates (DEFAULT_THROTTLE_RATES), not secrets.
RESET_MAILS_PER_ADDRESS = "password_reset"
RESET_MAILS_PER_EMAIL = "password_reset_email"


def user_password_reset_request(*, request: HttpRequest, email: str) -> None:
    """Mails a one-time link to set a new password to each active account registered with
    `email` (Django's PasswordResetForm and token: the link stops working once the password
    changes or the account logs in, and after PASSWORD_RESET_TIMEOUT). Says nothing of
    whether such an account exists, in its answer nor in its time: the request publishes
    the same task for every valid address (accounts.tasks.password_reset_mail_send), and
    the worker looks the accounts up and mails them (accounts.password_reset). Counted
    per client address and per address asked about (a mailbox is not flooded from many
    addresses): 429 beyond either rate. 403 where links are not mailed
    (PASSWORD_RESET_BY_MAIL off: mail would go to the logs); 503 when the task cannot be
    published (the broker is down), whatever the address."""
    if not settings.PASSWORD_RESET_BY_MAIL:
        raise PasswordResetUnavailable()
    email = email.strip()
    for scope, ident in (
        (RESET_MAILS_PER_ADDRESS, client_address(request=request)),
        (RESET_MAILS_PER_EMAIL, email.casefold()),
    ):
        wait = shared_rate_wait(scope=scope, ident=ident)
        if wait is not None:
            raise PasswordResetThrottled(retry_after=int(wait) + 1)
    if not PasswordResetForm({"email": email}).is_valid():
        raise InvalidInput(fields={"email": ["Enter a valid email address."]})
    try:
        password_reset_mail_send.apply_async(
            kwargs={"email": email, "domain": request.get_host(), "use_https": request.is_secure()}, retry=False
        )
    except Exception as exc:  # the broker unreachable or refusing: the same answer for every address
        logger.warning(
            "password reset not published", extra={"client_ip": client_address(request=request)}, exc_info=True
        )
        raise ServiceUnavailable() from exc
    logger.info("password reset asked", extra={"client_ip": client_address(request=request)})


def user_password_reset_done(*, request: HttpRequest, user: AbstractBaseUser) -> None:
    """A password set by a reset link: the failed logins this client counted for the
    account are cleared (the trader who forgot the password and locked the account out
    trying logs in with the new one at once)."""
    login_failures_clear(request=request, username=user.get_username())
    logger.info("password reset by link", extra={"user_id": user.pk})


def api_key_create_from_form(
    *, user: AbstractBaseUser, label: str, permissions: list[str], form_id: str
) -> tuple[ApiKey, str]:
    """The keys page's creation, once per rendered form (core.cache.form_once): the same
    form sent again (a reload of the answer that showed the secret, which browsers offer to
    resend) is ApiKeyFormResent and creates nothing, where it created a second key the
    trader never saw the secret of. No id: created."""
    if not form_id:
        return api_key_create(user=user, label=label, permissions=permissions)
    return form_once(
        f"api-key-form:{user.pk}:{form_id}",
        resent=ApiKeyFormResent(),
        act=lambda: api_key_create(user=user, label=label, permissions=permissions),
    )


def api_keys_reencrypt() -> int:
    """Encrypts again with the present key every API key secret only an older key opens
    (SECRET_KEY_FALLBACKS, or API_KEY_ENCRYPTION_KEYS past the first); how many. Run before
    an old key leaves the settings: the secrets it alone opens would be lost, every such API
    key answering invalid_signature (manage.py api_keys_reencrypt; docs/security.md,
    "Rotating the secret key"). A key deleted or encrypted again meanwhile is left as it is."""
    done = 0
    for pk, token in ApiKey.objects.order_by("pk").values_list("pk", "secret_encrypted").iterator():
        again = secret_reencrypted(token)
        if again is not None:
            done += ApiKey.objects.filter(pk=pk, secret_encrypted=token).update(secret_encrypted=again)
    return done


@transaction.atomic
def api_key_create(*, user: AbstractBaseUser, label: str, permissions: list[str]) -> tuple[ApiKey, str]:
    """A new API key and its secret: the only time the secret is available in clear (it is
    stored encrypted: accounts.api_keys). Permissions are ["read"] or ["read", "trade"]."""
    if (
        not 0 < len(label) <= API_KEY_LABEL_MAX_LENGTH
        or not API_KEY_LABEL.fullmatch(label)
        or any("\ud800" <= char <= "\udfff" for char in label)
    ):
        raise InvalidInput(fields={"label": [f"1 to {API_KEY_LABEL_MAX_LENGTH} printable characters."]})
    if permissions not in API_KEY_PERMISSION_LISTS:
        raise InvalidInput(fields={"permissions": ['["read"] or ["read", "trade"].']})
    # Serialises a user's concurrent creations so that the limit holds.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    if ApiKey.objects.filter(user_id=user.pk).count() >= settings.API_KEYS_PER_USER_MAX:
        raise TooManyApiKeys()
    key, secret = key_material_new()
    api_key = ApiKey.objects.create(
        user_id=user.pk,
        key=key,
        secret_encrypted=secret_encrypt(secret),
        label=label,
        can_trade=PERMISSION_TRADE in permissions,
        created_at=timezone.now(),
    )
    logger.info("api key created", extra={"user_id": user.pk, "api_key_id": api_key.pk, "api_key": key})
    return api_key, secret


def api_key_delete(*, user_id: int, api_key_id: int) -> None:
    """Revokes the key at once (the row goes; the next signed request with it is
    invalid_api_key). 404 when it is not the caller's."""
    deleted, _ = ApiKey.objects.filter(pk=api_key_id, user_id=user_id).delete()
    if not deleted:
        raise ApiKeyNotFound()
    logger.info("api key deleted", extra={"user_id": user_id, "api_key_id": api_key_id})


def inactive_credentials_revoke(*, user_id: int | None = None) -> tuple[int, int]:
    """Deletes the API keys and blacklists the refresh tokens of inactive accounts (of
    `user_id` only, when given): the API keys deleted and refresh tokens revoked. Both are
    refused while their owner is inactive, but came back with a reactivation: an account
    closed because a key or a session leaked was reopened with them. Nothing to do: two
    queries."""
    inactive = get_user_model().objects.filter(is_active=False)
    if user_id is not None:
        inactive = inactive.filter(pk=user_id)
    keys = list(ApiKey.objects.filter(user_id__in=inactive.values("pk")).values_list("pk", "user_id"))
    if keys:
        ApiKey.objects.filter(pk__in=[pk for pk, _ in keys]).delete()
    tokens = refresh_tokens_revoke(user_ids=inactive.values("pk"))
    for pk, owner in keys:
        logger.info("api key deleted: its owner is inactive", extra={"user_id": owner, "api_key_id": pk})
    if tokens:
        logger.info("refresh tokens of inactive accounts revoked", extra={"revoked": tokens, "user_id": user_id})
    return len(keys), tokens
