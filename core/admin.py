"""What every admin of a financial record shares."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from core.text import parse_id


class SelectionCheckedAdmin(admin.ModelAdmin):
    """An admin action's selection as the list posts it: ids. A value that is no id (crafted:
    "abc", NUL, more digits than a bigint) names no record, so it is dropped, as an id in a URL
    is (core.text); Django's own filter on it was a 500. Nothing left: Django's "Items must be
    selected" message."""

    def response_action(
        self, request: HttpRequest, queryset: QuerySet[Any], *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        ids = [value for value in selected if parse_id(value) is not None]
        if ids != selected:
            post = request.POST.copy()
            post.setlist(helpers.ACTION_CHECKBOX_NAME, ids)
            request.POST = post  # type: ignore[assignment]
        return super().response_action(request, queryset, *args, **kwargs)


class ReadOnlyAdmin(SelectionCheckedAdmin):
    """A financial record (revenue events, delivery batches, deployments, trades, the ledger,
    the trade outbox) is written by services only: the admin shows it and nothing more. No
    add, change or delete, for anyone: the pages are view-only and posting to them answers
    403. What staff may do to such a record is an action with an audit trail (revenue.staff_actions)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
