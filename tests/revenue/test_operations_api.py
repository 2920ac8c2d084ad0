from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from revenue.delivery.metadata import (
    DeliveryMetadata,
    DeliveryStatus,
    Key,
    patch_delivered,
    patch_failed,
    patch_returned,
    patch_submitted,
)
from revenue.models import DeliveryHeartbeat, RevenueEvent, StaffAction
from revenue.reports import onchain_failure_report
from revenue.services import revenue_collect
from revenue.worker_status import onchain_worker_status
from tests.answers import hand_built_bytes
from tests.conftest import jwt_client
from tests.factories import StaffFactory, market_create
from tests.revenue.delivery_support import event_patch

pytestmark = pytest.mark.django_db
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def _event(stream: int, source: str, *patches: dict[str, Any], amount: str = "10") -> RevenueEvent:
    event = revenue_collect(
        stream=stream, amount=amount, description=f"event {source}", source_type="t", source_id=source
    )
    event_patch(event.pk, *patches)
    return RevenueEvent.objects.get(pk=event.pk)


def _failed(attempts: int, error: str = "x", *, retry: bool = True) -> dict[str, Any]:
    return patch_failed(attempts=attempts, error=error, now=timezone.now(), next_retry_at=LATER if retry else None)


def _submitted(tx_hash: str = "0xabc") -> dict[str, Any]:
    return patch_submitted(batch_id=1, tx_hash=tx_hash, nonce=0, now=timezone.now())


def _age(event: RevenueEvent, **delta) -> None:
    RevenueEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(**delta))


@pytest.fixture
def failures(db):
    failed = _event(0, "f1", _failed(2, "node down"))
    critical = _event(0, "f2", _failed(5, "reverted", retry=False), amount="20")
    other_stream = _event(4, "f3", _failed(1, "timeout"))
    stale_pending = _event(1, "p1")
    _age(stale_pending, minutes=11)
    fresh_pending = _event(1, "p2")
    attempted_pending = _event(1, "p3", _submitted(), patch_returned())  # tried, then returned
    _age(attempted_pending, minutes=30)
    delivered = _event(
        0,
        "d1",
        patch_delivered(batch_id=1, tx_hash="0xd1", nonce=0, block_number=1, block_hash="0xb1", now=timezone.now()),
    )
    old_failed = _event(0, "old", _failed(1))
    _age(old_failed, hours=30)
    return {
        "failed": failed,
        "critical": critical,
        "other": other_stream,
        "stale": stale_pending,
        "fresh": fresh_pending,
        "delivered": delivered,
        "old": old_failed,
    }


def test_failure_report_counts_failed_and_stale_pending_in_window(staff_client, failures):
    body = staff_client.get("/api/admin/revenue/onchain-failures").json()
    summary = body["summary"]
    assert summary["total_failures"] == 4  # f1, f2, f3 and the stale pending p1
    assert summary["critical_failures"] == 1
    assert summary["period_hours"] == 24
    expected_pending = sum(failures[k].holder_share for k in ("failed", "critical", "other", "stale"))
    assert Decimal(summary["total_holder_share_pending"]) == expected_pending
    streams = {s["stream_id"]: s for s in body["by_stream"]}
    assert set(streams) == {0, 1, 4}
    assert streams[0]["count"] == 2 and streams[0]["max_retries"] == 5 and streams[0]["stream_name"] == "Trading Fees"
    ids = {e["id"] for e in streams[0]["events"]}
    assert ids == {failures["failed"].pk, failures["critical"].pk}
    event = next(e for e in streams[0]["events"] if e["id"] == failures["failed"].pk)
    assert event["last_error"] == "node down" and event["retry_attempts"] == 2
    assert event["next_retry_at"] == "2030-01-01T00:00:00.000000+00:00" and event["status"] == "failed"
    critical = next(e for e in streams[0]["events"] if e["id"] == failures["critical"].pk)
    assert critical["status"] == "critical" and critical["next_retry_at"] is None
    assert summary["delivery_paused"] is False and summary["pause"] is None


def test_failure_report_totals_are_exact_past_fifteen_significant_digits(staff_client, db):
    """On SQLite too, whose SUM of the money text columns is floating point."""
    events = [
        _event(0, source, _failed(1), amount=amount)
        for source, amount in (("b1", "98765432109876543.21098765"), ("b2", "12345678901234567.89012345"))
    ]
    expected = sum(event.holder_share for event in events)
    assert len(expected.as_tuple().digits) > 15

    body = staff_client.get("/api/admin/revenue/onchain-failures").json()

    assert Decimal(body["summary"]["total_holder_share_pending"]) == expected
    assert [Decimal(s["total_holder_share"]) for s in body["by_stream"]] == [expected]


def _submitted_ago(minutes: int, tx_hash: str = "0xabc") -> dict[str, Any]:
    return patch_submitted(batch_id=1, tx_hash=tx_hash, nonce=0, now=timezone.now() - timedelta(minutes=minutes))


def test_failure_report_counts_long_in_flight_events_for_reconciliation(staff_client, failures):
    stuck = _event(0, "s1", _submitted_ago(15))
    _age(stuck, minutes=15)
    _event(0, "s2", _submitted())  # in flight, but only just
    assert staff_client.get("/api/admin/revenue/onchain-failures").json()["summary"]["needs_reconciliation"] == 1


def test_needs_reconciliation_counts_from_the_submission_not_the_events_creation(staff_client, db):
    """An event that waited out a pause (or a backoff) for hours and was sent a second ago
    is not a transaction stuck for over 10 minutes: every event sent when delivery resumed
    used to be reported so."""
    resumed = _event(0, "r1", _submitted())
    _age(resumed, hours=3)
    stuck = _event(0, "r2", _submitted_ago(15, "0xdef"))
    _age(stuck, minutes=16)
    adopted = _event(0, "r3", {Key.STATUS.value: DeliveryStatus.SUBMITTED.value})  # no submission time: by its creation
    _age(adopted, minutes=30)
    summary = staff_client.get("/api/admin/revenue/onchain-failures").json()["summary"]
    assert summary["needs_reconciliation"] == 2


def test_failure_report_stream_filter_alias_and_hours(staff_client, failures):
    by_name = staff_client.get("/api/admin/revenue/onchain-failures", {"stream_id": 4}).json()
    by_alias = staff_client.get("/api/admin/revenue/onchain-failures", {"streamId": 4}).json()
    assert by_name == by_alias
    both = staff_client.get("/api/admin/revenue/onchain-failures", {"stream_id": 4, "streamId": 4}).json()
    assert both == by_name
    assert [s["stream_id"] for s in by_name["by_stream"]] == [4]
    wide = staff_client.get("/api/admin/revenue/onchain-failures", {"hours": 48}).json()
    assert wide["summary"]["total_failures"] == 5 and wide["summary"]["period_hours"] == 48


@pytest.mark.parametrize(
    "params",
    [
        {"hours": "abc"},
        {"hours": "0"},
        {"hours": ""},
        {"stream_id": "x"},
        {"streamId": "42"},
        {"stream_id": "9", "streamId": "570"},  # an alias out of range is refused, not ignored
        {"stream_id": "4", "streamId": "2"},  # nor is one of two values taken without a word
    ],
)
def test_failure_report_rejects_bad_parameters(staff_client, db, params):
    response = staff_client.get("/api/admin/revenue/onchain-failures", params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_worker_status_reflects_heartbeat_and_counts(staff_client, failures):
    now = timezone.now()
    DeliveryHeartbeat.objects.update_or_create(
        pk=1,
        defaults={
            "last_run_at": now,
            "connected": True,
            "chain_id": 31337,
            "block_number": 42,
            "signer_address": "0x" + "1" * 40,
            "contract_address": "0x" + "2" * 40,
            "signer_balance_wei": "5",
        },
    )
    body = staff_client.get("/api/admin/revenue/onchain-worker-status").json()
    assert body["enabled"] is True
    assert body["batch_size"] == 200 and body["max_retry_attempts"] == 5 and body["poll_interval_seconds"] == 60
    # critical is its own status: the counts add up to the events
    assert body["counts"] == {"pending": 3, "submitted": 0, "delivered": 1, "failed": 3, "critical": 1}
    assert sum(body["counts"].values()) == RevenueEvent.objects.count()
    assert body["paused"] is None and body["batches_stuck"] == 0
    assert (
        body["chain"]["connected"] is True
        and body["chain"]["chain_id"] == 31337
        and body["chain"]["block_number"] == 42
    )
    assert body["last_run_at"] is not None


def test_worker_status_reports_the_schedule_beat_follows(staff_client, db):
    """The interval beat re-drives at is the database's (migrate wrote the setting there once;
    staff may edit or disable it): the status said the setting's 60 s whatever beat did."""
    task = PeriodicTask.objects.get(task="revenue.tasks.revenue_delivery_redrive")
    task.interval = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.MINUTES)
    task.save()

    def status() -> tuple[int, bool]:
        body = staff_client.get("/api/admin/revenue/onchain-worker-status").json()
        return body["poll_interval_seconds"], body["redrive_scheduled"]

    assert status() == (120, True)
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)
    assert status() == (120, False)
    task.delete()
    assert status() == (settings.DELIVERY_POLL_INTERVAL_SECONDS, False)


def test_retry_queues_a_failed_event(staff_client, failures, django_capture_on_commit_callbacks):
    event = failures["critical"]
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(f"/api/admin/revenue/events/{event.pk}/retry")
    assert response.status_code == 202
    document = DeliveryMetadata.of(RevenueEvent.objects.get(pk=event.pk).metadata)
    assert document.status == DeliveryStatus.PENDING and document.retry_attempts == 0
    assert callbacks, "the delivery task is published after the commit"


def test_retry_refuses_delivered_and_unknown_events(staff_client, failures):
    delivered = staff_client.post(f"/api/admin/revenue/events/{failures['delivered'].pk}/retry")
    assert delivered.status_code == 409 and delivered.json()["error"]["code"] == "event_not_retryable"
    missing = staff_client.post("/api/admin/revenue/events/999999/retry")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "revenue_event_not_found"


def test_retry_needs_the_retry_delivery_permission(failures):
    # As in the admin (docs/operations.md, "The admin desk"): staff without
    # revenue.retry_delivery may read the reports (with revenue.view_revenueevent, as the
    # admin's report asks), not queue a delivery again.
    viewer = StaffFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_revenueevent"))
    client = jwt_client(viewer)
    event = failures["critical"]
    assert client.get("/api/admin/revenue/onchain-failures").status_code == 200
    response = client.post(f"/api/admin/revenue/events/{event.pk}/retry")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert DeliveryMetadata.of(RevenueEvent.objects.get(pk=event.pk).metadata).status == DeliveryStatus.CRITICAL
    assert not StaffAction.objects.exists()
    viewer.user_permissions.add(Permission.objects.get(codename="retry_delivery"))
    viewer = type(viewer).objects.get(pk=viewer.pk)  # a fresh permission cache
    assert jwt_client(viewer).post(f"/api/admin/revenue/events/{event.pk}/retry").status_code == 202


def test_staff_who_may_retry_read_the_reports(failures):
    # As in the admin: revenue.retry_delivery alone reads what it retries (it was 403).
    retrier = StaffFactory(is_superuser=False)
    retrier.user_permissions.add(Permission.objects.get(codename="retry_delivery"))
    client = jwt_client(retrier)
    assert client.get("/api/admin/revenue/onchain-failures").status_code == 200
    assert client.get("/api/admin/revenue/onchain-worker-status").status_code == 200
    nobody = jwt_client(StaffFactory(is_superuser=False))
    assert nobody.get("/api/admin/revenue/onchain-failures").status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/admin/revenue/onchain-failures"),
        ("get", "/api/admin/revenue/onchain-worker-status"),
        ("post", "/api/admin/revenue/events/1/retry"),
    ],
)
def test_staff_only(api_client, user_client, db, method, path):
    assert getattr(api_client, method)(path).status_code == 401
    assert getattr(user_client, method)(path).status_code == 403


@pytest.mark.parametrize("paused", [False, True])
def test_staff_answers_are_the_bytes_the_hand_built_dicts_were(staff_client, failures, paused):
    now = timezone.now()
    DeliveryHeartbeat.objects.update_or_create(
        pk=1,
        defaults={
            "last_run_at": now,
            "last_success_at": now - timedelta(seconds=7, microseconds=123),
            "last_error": "rpc timeout",
            "last_error_at": now,
            "connected": True,
            "chain_id": 31337,
            "block_number": 42,
            "finalized_block": 40,
            "items_paid": 9,
            "signer_address": "0x" + "1" * 40,
            "contract_address": "0x" + "2" * 40,
            "signer_balance_wei": "5000000000000000000",
            **(
                {
                    "pause_cause": "node_unreachable",
                    "pause_detail": "down",
                    "paused_since": now,
                    "pause_alerted_at": None,
                }
                if paused
                else {}
            ),
        },
    )
    report = onchain_failure_report(hours=48)
    answer = staff_client.get("/api/admin/revenue/onchain-failures?hours=48")
    assert report.by_stream and report.by_stream[0]["events"]  # the report has events to write
    assert answer.content == hand_built_bytes({"summary": report.summary, "by_stream": report.by_stream})
    status = staff_client.get("/api/admin/revenue/onchain-worker-status")
    assert status.json()["paused"] is not None if paused else status.json()["paused"] is None
    assert status.content == hand_built_bytes(onchain_worker_status())
    event = failures["failed"]
    retried = staff_client.post(f"/api/admin/revenue/events/{event.pk}/retry")
    assert retried.content == hand_built_bytes({"id": event.pk, "status": "queued"})


def test_the_holder_share_pending_counts_another_currency_at_its_dollar_price(staff_client):
    # An ETH-BTC market's revenue events are in BTC: 0.00009 BTC of holder share owed was
    # added to the USDT shares as 0.00009 (dollars). Now at BTC-USDT's price; a currency with
    # no dollar price (DOGE here) is left out of the sum, its event still counted.
    market_create("BTC-USDT", reference_price="60000.00")
    usdt = _event(0, "usdt", _failed(1))
    btc = revenue_collect(stream=0, amount="0.0006", description="b", source_type="t", source_id="btc", currency="BTC")
    doge = revenue_collect(stream=0, amount="7", description="d", source_type="t", source_id="doge", currency="DOGE")
    event_patch(btc.pk, _failed(1))
    event_patch(doge.pk, _failed(1))
    body = staff_client.get("/api/admin/revenue/onchain-failures").json()
    expected = usdt.holder_share + btc.holder_share * 60000
    assert body["summary"]["total_failures"] == 3
    assert Decimal(body["summary"]["total_holder_share_pending"]) == expected
    (stream,) = body["by_stream"]
    assert Decimal(stream["total_holder_share"]) == expected and stream["count"] == 3
    # each event's share in its own currency, which the answer now names
    assert {e["id"]: (e["holder_share"], e["currency"]) for e in stream["events"]} == {
        usdt.pk: (f"{usdt.holder_share:.8f}", "USDT"),
        btc.pk: ("0.00009000", "BTC"),
        doge.pk: (f"{doge.holder_share:.8f}", "DOGE"),
    }
