"""core.admin_beat: the periodic tasks' list actions need the change permission, and each
is recorded in the task's History; what a task runs, and with what, is a superuser's."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
LIST = "/admin/django_celery_beat/periodictask/"


def _staff_client(*codenames: str) -> tuple[Client, object]:
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="django_celery_beat", codename__in=codenames)
    )
    client = Client()
    client.force_login(get_user_model().objects.get(pk=staff.pk))
    return client, staff


def _every_task() -> list[str]:
    ids = [str(pk) for pk in PeriodicTask.objects.values_list("pk", flat=True)]
    assert ids  # migrate schedules the platform's periodic tasks
    return ids


@pytest.mark.parametrize("action", ["disable_tasks", "toggle_tasks", "run_tasks"])
def test_a_staff_member_who_may_only_view_periodic_tasks_cannot_disable_or_run_them(action):
    """Was open: with view_periodictask alone the list's action disabled every periodic task
    (the delivery re-drive, the sweep of inactive accounts), and nothing said who had."""
    viewer, _ = _staff_client("view_periodictask")
    assert viewer.get(LIST).status_code == 200
    response = viewer.post(LIST, {"action": action, "_selected_action": _every_task()})
    assert response.status_code == 200  # the list again, with "No action selected."
    assert not PeriodicTask.objects.filter(enabled=False).exists()
    assert not LogEntry.objects.exists()


def test_a_staff_member_allowed_to_change_them_disables_one_on_the_record():
    editor, staff = _staff_client("view_periodictask", "change_periodictask")
    redrive = PeriodicTask.objects.get(task="revenue.tasks.revenue_delivery_redrive")
    response = editor.post(LIST, {"action": "disable_tasks", "_selected_action": [str(redrive.pk)]})
    assert response.status_code == 302
    redrive.refresh_from_db()
    assert not redrive.enabled
    record = LogEntry.objects.get()
    assert (record.user_id, record.object_id, record.get_change_message()) == (
        staff.pk,  # type: ignore[attr-defined]
        str(redrive.pk),
        "Disabled (list action).",
    )


def _task_form(periodic: PeriodicTask, /, **changes: object) -> dict[str, object]:
    """The change form of `periodic` as posted, with `changes` (every field of the stock form)."""
    form: dict[str, object] = {
        "name": periodic.name, "regtask": periodic.task, "task": periodic.task, "enabled": "on", "description": "",
        "interval": periodic.interval_id or "", "crontab": "", "solar": "", "clocked": "",
        "start_time_0": "", "start_time_1": "", "last_run_at_0": "", "last_run_at_1": "",
        "args": periodic.args, "kwargs": periodic.kwargs, "expires_0": "", "expires_1": "", "expire_seconds": "",
        "queue": "", "exchange": "", "routing_key": "", "headers": "{}", "priority": "",
    }  # fmt: skip
    return {**form, **changes}


RESET_MAIL = {
    "regtask": "accounts.tasks.password_reset_mail_send",
    "task": "accounts.tasks.password_reset_mail_send",
    "kwargs": json.dumps({"email": "trader@example.com", "domain": "attacker.example", "use_https": True}),
}


def test_a_staff_member_allowed_to_change_periodic_tasks_cannot_choose_what_they_run():
    """Was open: add or change on periodic tasks chose any registered task and its arguments,
    so `password_reset_mail_send` with a trader's address and `attacker.example` had the
    worker mail the trader a real reset link to that host. Staff change the schedule only."""
    editor, _ = _staff_client("view_periodictask", "change_periodictask", "add_periodictask")
    redrive = PeriodicTask.objects.get(task="revenue.tasks.revenue_delivery_redrive")
    other_interval = IntervalSchedule.objects.create(every=7, period=IntervalSchedule.MINUTES)

    assert editor.get(f"{LIST}add/").status_code == 403
    added = editor.post(f"{LIST}add/", _task_form(redrive, name="mail them", **RESET_MAIL))
    assert added.status_code == 403
    assert not PeriodicTask.objects.filter(task=RESET_MAIL["task"]).exists()

    page = editor.get(f"{LIST}{redrive.pk}/change/")
    assert page.status_code == 200
    assert "regtask" not in page.context["adminform"].form.fields
    changed = editor.post(f"{LIST}{redrive.pk}/change/", _task_form(redrive, interval=other_interval.pk, **RESET_MAIL))
    assert changed.status_code == 302
    redrive.refresh_from_db()
    assert (redrive.task, redrive.kwargs, redrive.interval_id) == (
        "revenue.tasks.revenue_delivery_redrive",
        "{}",
        other_interval.pk,  # the schedule is theirs to change
    )


def test_a_superuser_still_chooses_the_task_and_its_arguments():
    superuser = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(superuser)
    redrive = PeriodicTask.objects.get(task="revenue.tasks.revenue_delivery_redrive")
    response = client.post(f"{LIST}add/", _task_form(redrive, name="mail them", **RESET_MAIL))
    assert response.status_code == 302
    assert PeriodicTask.objects.get(name="mail them").kwargs == RESET_MAIL["kwargs"]
