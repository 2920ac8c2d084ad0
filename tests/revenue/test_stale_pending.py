"""Stale pending: an event left pending for over 10 minutes since anything last happened to
it. The failure report counted only events never attempted (no last send recorded): one sent
before and returned to pending (its batch abandoned, a reorg, a staff retry) was never
reported, however long it waited; only the banners and the pending-age alert showed it.
The report, the worker status and the admin list now count by one rule."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from revenue.delivery.metadata import DeliveryStatus, patch_carried, patch_failed, patch_returned, patch_submitted
from revenue.delivery.transitions import events_return, revenue_event_delivery_retry
from revenue.models import RevenueEvent
from revenue.reports import onchain_failure_report
from revenue.services import revenue_collect
from revenue.worker_status import onchain_worker_status
from tests.revenue.delivery_support import event_patch

pytestmark = pytest.mark.django_db


def _event(source: str, *, age: timedelta) -> RevenueEvent:
    event = revenue_collect(stream=0, amount="5", description=source, source_type="t", source_id=source)
    RevenueEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - age)
    return event


def _sent(event: RevenueEvent, *, ago: timedelta) -> None:
    event_patch(event.pk, patch_submitted(batch_id=1, tx_hash="0x1", nonce=0, now=timezone.now() - ago))


def _abandoned(event: RevenueEvent) -> None:
    """Back to pending as an abandoned (or superseded, or operator-failed) batch returns its events."""
    assert events_return(event_ids=[event.pk], from_statuses=[DeliveryStatus.SUBMITTED], batch_id=None, error="x")


@pytest.fixture
def pending(db):
    now = timezone.now()
    events = {name: _event(name, age=timedelta(hours=2)) for name in (
        "abandoned", "retried_long_ago", "reorged_long_ago", "just_retried", "just_reorged", "dust")}  # fmt: skip
    _sent(events["abandoned"], ago=timedelta(minutes=40))
    _abandoned(events["abandoned"])
    for name in ("retried_long_ago", "just_retried"):
        _sent(events[name], ago=timedelta(hours=1))
        event_patch(events[name].pk, patch_failed(attempts=5, error="boom", now=now, next_retry_at=None))
    revenue_event_delivery_retry(event_id=events["retried_long_ago"].pk, now=now - timedelta(minutes=20))
    revenue_event_delivery_retry(event_id=events["just_retried"].pk, now=now)
    _sent(events["reorged_long_ago"], ago=timedelta(hours=1))
    event_patch(events["reorged_long_ago"].pk, patch_returned(now=now - timedelta(minutes=15)))
    _sent(events["just_reorged"], ago=timedelta(hours=1))
    event_patch(events["just_reorged"].pk, patch_returned(now=now - timedelta(minutes=1)))
    event_patch(events["dust"].pk, patch_carried(now=now - timedelta(hours=1)))
    events["never_sent"] = _event("never_sent", age=timedelta(minutes=11))
    events["fresh"] = _event("fresh", age=timedelta(minutes=2))
    events["old_returned"] = _event("old_returned", age=timedelta(days=3))
    _sent(events["old_returned"], ago=timedelta(days=2))
    _abandoned(events["old_returned"])
    return events


STALE_IN_WINDOW = ("abandoned", "retried_long_ago", "reorged_long_ago", "never_sent")
STALE = (*STALE_IN_WINDOW, "old_returned")  # created three days ago: before the 24 hours' window


def _ids(pending: dict[str, RevenueEvent], names: tuple[str, ...]) -> set[int]:
    return {pending[name].pk for name in names}


def test_the_report_counts_events_sent_before_and_returned_to_pending(pending):
    report = onchain_failure_report(hours=24)
    listed = {event["id"] for stream in report.by_stream for event in stream["events"]}  # type: ignore[attr-defined]
    assert listed == _ids(pending, STALE_IN_WINDOW)
    assert report.summary["total_failures"] == len(STALE_IN_WINDOW)
    assert report.summary["stale_pending"] == len(STALE)  # whenever they were created
    assert onchain_failure_report(hours=24 * 4).summary["total_failures"] == len(STALE)


def test_the_worker_status_and_the_admin_list_count_by_the_same_rule(pending, staff_client, client, staff):
    worker = onchain_worker_status()
    assert worker["stale_pending"] == len(STALE) and worker["counts"]["pending"] == len(pending)
    body = staff_client.get("/api/admin/revenue/onchain-worker-status").json()
    assert body["stale_pending"] == len(STALE) and body["counts"]["pending"] == len(pending)
    summary = staff_client.get("/api/admin/revenue/onchain-failures").json()["summary"]
    assert (summary["stale_pending"], summary["total_failures"]) == (len(STALE), len(STALE_IN_WINDOW))

    client.force_login(staff)
    listing = client.get("/admin/revenue/revenueevent/?delivery=stale_pending").content.decode()
    shown = {int(pk) for pk in re.findall(r'href="/admin/revenue/revenueevent/(\d+)/change/', listing)}
    assert shown == _ids(pending, STALE)
    page = client.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    assert re.search(rf'id="stale-pending" class="ws-bad">{len(STALE)}\b', page)
    report = client.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert re.search(rf'id="stale-pending" class="fr-critical">{len(STALE)}<', report)
    assert "?delivery=stale_pending" in report


def test_nothing_stale_reads_zero_without_a_link(db, staff, client):
    _event("fresh", age=timedelta(minutes=2))
    client.force_login(staff)
    assert onchain_worker_status()["stale_pending"] == 0
    page = client.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    assert 'id="stale-pending" class="">0' in page and "?delivery=stale_pending" not in page
