"""Expired refresh tokens' rows are deleted by a beat task (accounts.tasks): every login and
every rotation adds an outstanding token (and its family row, and a blacklist row once
spent), and nothing removed them, so the tables grew with every bot's refresh for ever."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.errors import InvalidToken
from accounts.models import RefreshTokenFamily
from accounts.tasks import refresh_tokens_expired_flush
from accounts.tokens import token_pair_issue, token_pair_rotate, token_stored_form
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_expired_refresh_tokens_rows_go_and_live_ones_keep_working():
    user = UserFactory()
    first = token_pair_issue(user=user)
    second = token_pair_rotate(refresh=first["refresh"])  # the first is spent: blacklisted
    other_login = token_pair_issue(user=user)
    # The first login's tokens are past their expiry (a week ago, say).
    OutstandingToken.objects.exclude(token=token_stored_form(other_login["refresh"])).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert refresh_tokens_expired_flush() > 0
    assert list(OutstandingToken.objects.values_list("token", flat=True)) == [token_stored_form(other_login["refresh"])]
    assert BlacklistedToken.objects.count() == 0
    assert RefreshTokenFamily.objects.count() == 1
    # The live login rotates as before, and reuse is still detected on it.
    rotated = token_pair_rotate(refresh=other_login["refresh"])
    assert rotated["refresh"] != other_login["refresh"]
    with pytest.raises(InvalidToken):
        token_pair_rotate(refresh=other_login["refresh"])
    assert token_stored_form(second["refresh"]) not in OutstandingToken.objects.values_list("token", flat=True)


def test_the_flush_is_scheduled_hourly():
    task = PeriodicTask.objects.get(task="accounts.tasks.refresh_tokens_expired_flush")
    assert task.enabled and (task.interval.every, task.interval.period) == (3600, "seconds")
