"""core.admin_beat: the periodic tasks' list actions need the change permission, and each
is recorded in the task's History."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django_celery_beat.models import PeriodicTask

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
