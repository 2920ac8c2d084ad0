"""Permissions shared by the API's views.

A delegated credential (an API key: accounts.api_keys.ApiKeyPrincipal, seen here only as
`request.auth.is_delegated`, since core does not import accounts) acts for its owner on
trading and reading, never on staff endpoints or on the management of credentials."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.request import Request

from core.errors import ApplicationError


class DelegatedCredentialRefused(ApplicationError):
    code = "api_key_not_allowed"
    status = 403
    default_message = "API keys cannot do this; use a login token or the session."


def is_delegated(request: Request) -> bool:
    return bool(getattr(request.auth, "is_delegated", False))


class IsStaff(IsAdminUser):
    """Staff only: anonymous callers get 401, authenticated non-staff 403, API keys 403."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if is_delegated(request):
            raise DelegatedCredentialRefused()
        return super().has_permission(request, view)


class IsAuthenticatedInPerson(BasePermission):
    """Authenticated with a login token or the session, not with an API key (403)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if is_delegated(request):
            raise DelegatedCredentialRefused()
        return bool(request.user and request.user.is_authenticated)


def staff_permission(permission: str, *alternatives: str) -> type[BasePermission]:
    """Staff (IsStaff's refusals first) who also hold the Django `permission` or one of its
    `alternatives` ("app_label.codename"; superusers hold every one): what the admin asks
    before the same act. Authenticated staff without any get 403 permission_denied."""
    permissions = (permission, *alternatives)

    class HasStaffPermission(IsStaff):
        def has_permission(self, request: Request, view: Any) -> bool:
            return super().has_permission(request, view) and any(request.user.has_perm(p) for p in permissions)

    HasStaffPermission.__name__ = HasStaffPermission.__qualname__ = f"IsStaffWith_{permission.replace('.', '_')}"
    return HasStaffPermission
