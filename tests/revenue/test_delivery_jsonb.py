"""Metadata updates are merges done by the database, never read-modify-write in Python."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from revenue.delivery.metadata import (
    DeliveryMetadata,
    DeliveryStatus,
    iso,
    patch_delivered,
    patch_failed,
    patch_returned,
)
from revenue.delivery.selectors import revenue_events_deliverable_queryset
from revenue.delivery.transitions import events_fail
from revenue.jsonb import JsonMerge, json_patch_per_row
from revenue.models import RevenueEvent
from tests.revenue.delivery_support import (
    committed_event,
    committed_event_delete,
    event_patch,
    events_create,
    in_thread,
)
from tests.revenue.delivery_support import metadata as delivery
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

# The merges are tested on keys of their own: the metadata document's keys belong to
# revenue.delivery.metadata, whose patches the delivery tests use.


def metadata(pk: int) -> dict:
    return RevenueEvent.objects.get(pk=pk).metadata


def test_merge_sets_keys_removes_none_and_keeps_the_rest():
    (pk,) = events_create(1)
    RevenueEvent.objects.filter(pk=pk).update(metadata=JsonMerge("metadata", {"kept": "0xab", "gone": 7}))
    RevenueEvent.objects.filter(pk=pk).update(
        metadata=JsonMerge("metadata", {"gone": None, "count": 2, "deep": {"a": [1, "x"]}})
    )
    data = metadata(pk)
    assert data["kept"] == "0xab" and "gone" not in data
    assert data["count"] == 2 and data["deep"] == {"a": [1, "x"]}
    assert DeliveryMetadata.of(data).status == DeliveryStatus.PENDING  # untouched keys survive


def test_one_update_writes_a_different_patch_per_row():
    *ids, without_patch = events_create(4)
    patches = {pk: {"ordinal": 10 + i, "wei": str(10**20 + i)} for i, pk in enumerate(ids)}
    updated = RevenueEvent.objects.filter(pk__in=[*ids, without_patch]).update(
        metadata=JsonMerge(JsonMerge("metadata", {"common": "yes"}), json_patch_per_row(patches))
    )
    assert updated == 4
    untouched = metadata(without_patch)
    assert untouched["common"] == "yes" and "ordinal" not in untouched
    for i, pk in enumerate(ids):
        data = metadata(pk)
        assert (data["ordinal"], data["wei"], data["common"]) == (10 + i, str(10**20 + i), "yes")


def test_failures_count_each_attempt_once_per_current_value(settings):
    ids = events_create(3)
    now = timezone.now()
    # three failed attempts, then back to pending (e.g. its deployment was superseded)
    event_patch(ids[2], patch_failed(attempts=3, error="x", now=now, next_retry_at=now), patch_returned())
    with transaction.atomic():
        events_fail(event_ids=ids, error="boom", now=now, from_statuses=[DeliveryStatus.PENDING])
    assert [delivery(pk).retry_attempts for pk in ids] == [1, 1, 4]
    assert delivery(ids[0]).next_retry_at == iso(now + timedelta(seconds=120))
    assert delivery(ids[2]).next_retry_at == iso(now + timedelta(seconds=960))
    # already failed: not in from_statuses, so not counted a second time
    with transaction.atomic():
        events_fail(event_ids=ids, error="again", now=now, from_statuses=[DeliveryStatus.PENDING])
    assert [delivery(pk).retry_attempts for pk in ids] == [1, 1, 4]


def test_timestamps_compare_as_times():
    early = timezone.now().replace(microsecond=0)
    assert iso(early) < iso(early + timedelta(microseconds=1)) < iso(early + timedelta(seconds=1))
    assert len(iso(early)) == len(iso(early + timedelta(microseconds=1)))


# The concurrent writers commit for real from their own threads and connections; the
# rows they need are committed (and removed) outside the test's transaction, so the
# test database is never flushed (later tests keep the migrations' seeded rows).


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # activity is snapshotted per transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.postgres
def test_concurrent_merges_on_postgres_both_survive():
    assert connection.vendor == "postgresql"
    pk = committed_event("concurrent-merges")
    first_wrote = threading.Event()
    second_waits = threading.Event()

    def first():
        with transaction.atomic():
            RevenueEvent.objects.filter(pk=pk).update(metadata=JsonMerge("metadata", {"first": 1}))
            first_wrote.set()
            # hold the row lock until the second writer is blocked on it
            assert second_waits.wait(10)
            wait_until(_lock_waiters, timeout=10, interval=0.01, what="the second writer to wait for the row lock")

    def second():
        assert first_wrote.wait(10)
        second_waits.set()
        RevenueEvent.objects.filter(pk=pk).update(metadata=JsonMerge("metadata", {"second": 2}))

    try:
        writers = [threading.Thread(target=in_thread, args=(fn,)) for fn in (first, second)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(30)
        data = in_thread(lambda: RevenueEvent.objects.get(pk=pk).metadata)
        assert data["first"] == 1 and data["second"] == 2
        assert DeliveryMetadata.of(data).status == DeliveryStatus.PENDING
    finally:
        committed_event_delete(pk)


@pytest.mark.postgres
def test_many_concurrent_writers_lose_no_key_on_postgres():
    pk = committed_event("many-writers")
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        def write() -> None:
            start.wait(10)
            for i in range(10):
                RevenueEvent.objects.filter(pk=pk).update(metadata=JsonMerge("metadata", {f"w{n}-{i}": i}))

        try:
            in_thread(write)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        data = in_thread(lambda: RevenueEvent.objects.get(pk=pk).metadata)
        assert all(data[f"w{n}-{i}"] == i for n in range(8) for i in range(10))
    finally:
        committed_event_delete(pk)


def test_the_redrive_scan_takes_the_waiting_events_oldest_first():
    """Which index serves it, at the scale where that matters, is checked in
    tests/revenue/test_scan_plans.py (on 200 events two equally small partial indexes tie)."""
    ids = events_create(200)
    now = timezone.now()
    delivered = patch_delivered(batch_id=1, tx_hash="0x1", nonce=0, block_number=1, block_hash="0x2", now=now)
    RevenueEvent.objects.filter(pk__in=ids[:190]).update(metadata=JsonMerge("metadata", delivered))
    queryset = revenue_events_deliverable_queryset(now=timezone.now()).values_list("pk")[:20]
    assert [row[0] for row in queryset] == ids[190:]
