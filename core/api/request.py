from __future__ import annotations

from django.contrib.auth.models import User
from rest_framework.request import Request

from core.errors import ApplicationError


class NotAuthenticated(ApplicationError):
    code = "not_authenticated"
    status = 401
    default_message = "Authentication credentials were not provided."


def request_user(request: Request) -> User:
    """The authenticated caller (views behind IsAuthenticated)."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise NotAuthenticated()
    return user
