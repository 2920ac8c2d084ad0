"""The user admin: Django's, without its way up. Stock, a staff member allowed to change
users could tick `is_superuser` or grant any permission on any account, their own
included, and set a superuser's password, then sign in as that superuser. Here only a
superuser edits what makes an account privileged, and only a superuser changes another
staff or superuser account (with its password set, an editor signed in as a staff account
allowed to credit wallets and credited itself). The platform's own accounts (the house, the fee account) are shown
only: a password or `is_active` set on them let a staff member allowed to change users
sign in as the house (accounts.selectors.user_is_system_account). An account that made
changes in the admin is never deleted: its History would go with it (deactivate it). Groups likewise: only a
superuser sets a group's permissions (stock, a staff member allowed to change groups gave
their own group `orders.add_deposit` and credited themselves). Refresh tokens are listed
without the token itself (simplejwt's admin showed it: a staff member allowed to view them
rotated a superuser's into a session of their own), and their blacklist, the record of each
spent or revoked token, is shown only (deleting a row made a logged-out token rotate again)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.http import HttpRequest
from rest_framework_simplejwt.token_blacklist.admin import BlacklistedTokenAdmin, OutstandingTokenAdmin
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.selectors import user_has_admin_history, user_is_system_account

User = get_user_model()
# What only a superuser may set on an account.
PRIVILEGE_FIELDS = ("is_superuser", "is_staff", "groups", "user_permissions")


class PlatformUserAdmin(UserAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        if getattr(request.user, "is_superuser", False):
            return fields
        return fields + PRIVILEGE_FIELDS

    @staticmethod
    def _out_of_reach(request: HttpRequest, obj: Any) -> bool:
        """Another privileged account (staff or superuser) for an editor who is no superuser:
        its permissions may be ones the editor lacks, so setting its password would lend them."""
        if getattr(request.user, "is_superuser", False) or obj.pk == request.user.pk:
            return False
        return bool(obj.is_superuser or obj.is_staff)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and user_is_system_account(username=obj.get_username()):
            return False  # its password form too
        if obj is not None and self._out_of_reach(request, obj):
            return False  # its password form too (UserAdmin.user_change_password asks this)
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and user_is_system_account(username=obj.get_username()):
            return False
        if obj is not None and self._out_of_reach(request, obj):
            return False
        if obj is not None and user_has_admin_history(user_id=obj.pk):
            # Its History rows (who changed what, when) are deleted with it: deactivated
            # instead, for anyone, superusers included (a demoted staff member's record was
            # erased by whoever could delete users).
            return False
        return super().has_delete_permission(request, obj)


class PlatformGroupAdmin(GroupAdmin):
    """Django's group admin; a group's permissions are shown only, to anyone but a superuser
    (its members hold them: an editor in the group, or able to add its members, lent them
    to themselves)."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        if getattr(request.user, "is_superuser", False):
            return fields
        return (*fields, "permissions")


class PlatformOutstandingTokenAdmin(OutstandingTokenAdmin):
    """simplejwt's admin of the issued refresh tokens, without the `token` column: the signed
    JWT itself, live until it is spent or expires, which anyone who reads it can rotate into
    the user's access (a superuser's included). Its jti, user and times are what is needed to
    find a login and see whether it is revoked."""

    fields = ("jti", "user", "created_at", "expires_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields


class PlatformBlacklistedTokenAdmin(BlacklistedTokenAdmin):
    """simplejwt's admin of the blacklist, shown only. A row is all that makes a refresh
    token spent or revoked (accounts.tokens): with the stock admin a staff member allowed to
    delete rows made a logged-out or revoked token rotate again, and one allowed to change
    them pointed a revocation at another token; either erased the record of it."""

    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.unregister(User)
admin.site.register(User, PlatformUserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, PlatformGroupAdmin)
admin.site.unregister(OutstandingToken)
admin.site.register(OutstandingToken, PlatformOutstandingTokenAdmin)
admin.site.unregister(BlacklistedToken)
admin.site.register(BlacklistedToken, PlatformBlacklistedTokenAdmin)
