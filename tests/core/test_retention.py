"""Expired sessions and expired database-cache entries are deleted by a beat task
(core.tasks.expired_entries_delete, docs/operations.md "Retention"): a session row per login
stayed after its expiry, for good, as nothing ran `clearsessions`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.tasks import expired_entries_delete
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_expired_sessions_go_and_live_ones_stay():
    gone, kept = Client(), Client()
    gone.force_login(UserFactory())
    kept.force_login(UserFactory())
    Session.objects.filter(session_key=gone.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    assert Session.objects.count() == 2
    expired_entries_delete()
    assert list(Session.objects.values_list("session_key", flat=True)) == [kept.session.session_key]
    assert kept.get("/wallet/").status_code == 200  # the live session still logs in


def test_the_deletion_is_scheduled_hourly():
    task = PeriodicTask.objects.get(task="core.tasks.expired_entries_delete")
    assert task.enabled and (task.interval.every, task.interval.period) == (3600, "seconds")
