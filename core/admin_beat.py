"""The periodic tasks' admin (django-celery-beat's), with its list actions behind the change
permission and recorded. Stock, its actions (enable, disable, toggle, run now) asked for no
permission: a staff member allowed only to view periodic tasks disabled every one of them,
the delivery re-drive and the sweep of inactive accounts included, and nothing recorded who
had (an action writes no History of its own).

What a task runs, with which arguments and where (EXECUTION_FIELDS), and adding a task, are
a superuser's: staff allowed to change periodic tasks change when they run and whether they
are enabled. Stock, that permission chose any registered task and any arguments: a task of
`accounts.tasks.password_reset_mail_send` with a trader's address and the domain of the
editor's choice made the worker mail the trader a genuine reset link to that domain."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import PeriodicTaskAdmin, PeriodicTaskForm
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


# What a periodic task runs and how it is sent: shown only, to anyone but a superuser.
EXECUTION_FIELDS = ("task", "args", "kwargs", "queue", "exchange", "routing_key", "priority", "headers")


class PeriodicTaskScheduleForm(PeriodicTaskForm):
    """A task's form without its task (`regtask`, `task`: EXECUTION_FIELDS are read-only):
    its schedule, whether it is enabled, its name and description."""

    regtask = None
    task = None

    def clean(self) -> dict[str, Any]:
        data = forms.ModelForm.clean(self) or {}  # PeriodicTaskForm's asks for the task's name
        if data.get("expire_seconds") is not None and data.get("expires"):
            raise forms.ValidationError("Only one can be set, in expires and expire_seconds")
        return data


def _superuser(request: HttpRequest) -> bool:
    return bool(getattr(request.user, "is_superuser", False))


class PlatformPeriodicTaskAdmin(PeriodicTaskAdmin):
    enable_tasks = _recorded("enable_tasks")
    disable_tasks = _recorded("disable_tasks")
    toggle_tasks = _recorded("toggle_tasks")
    run_tasks = _recorded("run_tasks")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _superuser(request) and super().has_add_permission(request)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if not _superuser(request):
            kwargs["form"] = PeriodicTaskScheduleForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if _superuser(request) else (*fields, *EXECUTION_FIELDS)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if _superuser(request):
            return fieldsets
        return [
            (name, {**options, "fields": tuple(f for f in options["fields"] if f != "regtask")})
            for name, options in fieldsets
        ]


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PlatformPeriodicTaskAdmin)
