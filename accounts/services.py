from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.errors import InvalidCredentials, LoginThrottled, UsernameTaken, WeakPassword
from accounts.login_throttle import login_failure_record, login_failures_clear, login_is_throttled

logger = logging.getLogger(__name__)


@transaction.atomic(durable=True)
def user_register(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise UsernameTaken(fields={"username": ["This username is already taken."]})
    candidate = user_model(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise WeakPassword(fields={"password": list(exc.messages)}) from exc
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError as exc:  # a concurrent registration won the race
        raise UsernameTaken(fields={"username": ["This username is already taken."]}) from exc
    logger.info("user registered", extra={"user_id": candidate.pk})
    return candidate


def user_authenticate(*, username: str, password: str, client_ip: str) -> AbstractBaseUser:
    """Check credentials with failed-login throttling."""
    if login_is_throttled(username=username, client_ip=client_ip):
        # The window restarts with the first failure of a series: at most this long.
        raise LoginThrottled(retry_after=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    user = authenticate(username=username, password=password)
    if user is None:
        login_failure_record(username=username, client_ip=client_ip)
        logger.warning("failed login", extra={"username": username[:150], "client_ip": client_ip})
        raise InvalidCredentials()
    login_failures_clear(username=username, client_ip=client_ip)
    return user


def token_pair_issue(*, user: AbstractBaseUser) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}
