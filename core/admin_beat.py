"""The periodic tasks' admin (django-celery-beat's), with its list actions behind the change
permission and recorded. Stock, its actions (enable, disable, toggle, run now) asked for no
permission: a staff member allowed only to view periodic tasks disabled every one of them,
the delivery re-drive and the sweep of inactive accounts included, and nothing recorded who
had (an action writes no History of its own)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

# What each action does to a task, as its History says.
ACTION_RECORDS = {
    "enable_tasks": "Enabled (list action).",
    "disable_tasks": "Disabled (list action).",
    "toggle_tasks": "Enabled or disabled in turn (list action).",
    "run_tasks": "Run now (list action).",
}


def _recorded(name: str) -> Any:
    """PeriodicTaskAdmin's action `name`, for staff allowed to change periodic tasks, each
    task it is given written to its History (who, when, what) before it runs."""
    stock = getattr(PeriodicTaskAdmin, name)

    @admin.action(description=stock.short_description, permissions=["change"])
    def action(model_admin: PlatformPeriodicTaskAdmin, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        for task in queryset:
            model_admin.log_change(request, task, ACTION_RECORDS[name])
        return stock(model_admin, request, queryset)

    action.__name__ = name
    return action


class PlatformPeriodicTaskAdmin(PeriodicTaskAdmin):
    enable_tasks = _recorded("enable_tasks")
    disable_tasks = _recorded("disable_tasks")
    toggle_tasks = _recorded("toggle_tasks")
    run_tasks = _recorded("run_tasks")


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PlatformPeriodicTaskAdmin)
