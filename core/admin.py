"""What every admin of a financial record shares."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from core import admin_beat  # noqa: F401  (the periodic tasks' admin, registered there)
from core.db import table_count
from core.text import parse_id

# Past this many rows (PostgreSQL's estimate) the unfiltered list of a financial record says
# "about N": counting every row cost a scan of the table on each load (155 ms a page at
# 300,000 revenue events), growing with it.
ESTIMATED_COUNT_FROM = 10_000


class EstimatedCountPaginator(Paginator):
    """A large table's pages: the unfiltered list's total is PostgreSQL's estimate once the
    table is large (core.db.table_count; ``estimated``: templates/admin/pagination.html says
    "about"); a filtered or searched list, and any list on SQLite, counts exactly."""

    estimated = False

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet) or rows.query.where:
            return super().count
        total, self.estimated = table_count(model=rows.model, exact_below=ESTIMATED_COUNT_FROM)
        return total


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
    403. What staff may do to such a record is an action with an audit trail (revenue.staff_actions).
    Such tables grow without end: their lists count them once at most, and estimate past
    ESTIMATED_COUNT_FROM rows."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False  # Django's second count, of the whole table beside the filtered one

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
