from __future__ import annotations

import logging
import unicodedata

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest

from accounts.errors import InvalidCredentials, UsernameTaken, WeakPassword
from accounts.login_throttle import login_failures_clear, login_refusal_check
from accounts.models import UsernameKey
from accounts.usernames import username_key, username_mixes_scripts
from core.errors import InvalidInput

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
    this username or this address is locked out, 401 for wrong credentials."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        login_refusal_check(request=request, username=username)
        logger.warning("failed login", extra={"username": username[:150], "client_ip": request.META.get("REMOTE_ADDR")})
        raise InvalidCredentials()
    login_failures_clear(request=request, username=username)
    return user
