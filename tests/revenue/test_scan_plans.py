"""The delivery's re-drive read and the failure report at scale (docs/performance.md,
"Scans at scale"): which events they select, on both backends, and on PostgreSQL the
shape of their plans over the benchmark's distribution of events (1% failed or critical,
0.5% pending, 0.5% submitted, the rest delivered), which is what kept them fast."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.seed import seed_revenue_events
from core.db import select_plans
from revenue.delivery.metadata import DeliveryMetadata, DeliveryStatus, Key, iso, patch_held, patch_returned
from revenue.delivery.selectors import revenue_events_deliverable, revenue_events_held
from revenue.jsonb import JsonMerge
from revenue.models import RevenueEvent
from revenue.reports import STALE_PENDING_MINUTES, held_count, onchain_failure_report, stale_pending_count
from tests.revenue.delivery_support import events_create, streams_ensure

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- what is selected


def _cases(now: datetime) -> dict[str, int]:
    """One event per case the re-drive and the report tell apart."""
    stale = now - timedelta(seconds=settings.DELIVERY_PENDING_STALE_SECONDS + 60)
    old = now - timedelta(minutes=STALE_PENDING_MINUTES + 60)
    past, future = iso(now - timedelta(minutes=1)), iso(now + timedelta(minutes=30))
    cases: dict[str, tuple[datetime, dict[str, object]]] = {
        "pending fresh": (now, {}),
        "pending stale": (old, {}),
        "pending stale, retried lately": (old, {Key.LAST_RETRY_AT: iso(now - timedelta(seconds=10))}),
        "pending stale, retried long ago": (old, {Key.LAST_RETRY_AT: iso(stale - timedelta(minutes=1))}),
        "pending carried": (old, {Key.CARRIED_AT: iso(old)}),
        # sent, and back to pending (its batch abandoned) long ago: no cycle took it since
        "pending, sent and returned long ago": (old, {Key.LAST_RETRY_AT: iso(old)}),
        "pending, sent long ago, re-queued by staff lately": (
            old,
            {Key.LAST_RETRY_AT: iso(old), Key.MANUAL_RETRY_AT: iso(now - timedelta(minutes=1))},
        ),
        "failed due": (now, {Key.STATUS: DeliveryStatus.FAILED, Key.NEXT_RETRY_AT: past, Key.RETRY_ATTEMPTS: 2}),
        "failed due, attempts exhausted": (
            now,
            {Key.STATUS: DeliveryStatus.FAILED, Key.NEXT_RETRY_AT: past, Key.RETRY_ATTEMPTS: 5},
        ),
        "failed not due": (now, {Key.STATUS: DeliveryStatus.FAILED, Key.NEXT_RETRY_AT: future, Key.RETRY_ATTEMPTS: 1}),
        "failed due, carried": (
            now,
            {Key.STATUS: DeliveryStatus.FAILED, Key.NEXT_RETRY_AT: past, Key.CARRIED_AT: iso(old)},
        ),
        "failed long ago": (now - timedelta(days=3), {Key.STATUS: DeliveryStatus.FAILED, Key.NEXT_RETRY_AT: past}),
        "critical": (old, {Key.STATUS: DeliveryStatus.CRITICAL, Key.RETRY_ATTEMPTS: 5}),
        "submitted": (old, {Key.STATUS: DeliveryStatus.SUBMITTED}),
        "delivered": (old, {Key.STATUS: DeliveryStatus.DELIVERED}),
    }
    ids = events_create(len(cases), prefix="case")
    for pk, (created_at, patch) in zip(ids, cases.values(), strict=True):
        plain = {str(key): (str(value) if isinstance(value, DeliveryStatus) else value) for key, value in patch.items()}
        RevenueEvent.objects.filter(pk=pk).update(created_at=created_at, metadata=JsonMerge("metadata", plain))
    return dict(zip(cases, ids, strict=True))


def _deliverable_by_hand(now: datetime, *, stale_only: bool) -> list[int]:
    """The rule of revenue_events_deliverable_queryset, spelled out in Python."""
    stale = iso(now - timedelta(seconds=settings.DELIVERY_PENDING_STALE_SECONDS))
    chosen = []
    for event in RevenueEvent.objects.order_by("id"):
        doc = DeliveryMetadata.of(event.metadata)
        if Key.CARRIED_AT in event.metadata:
            continue
        last_retry = event.metadata.get(Key.LAST_RETRY_AT)
        untouched = event.created_at <= now - timedelta(seconds=settings.DELIVERY_PENDING_STALE_SECONDS) and (
            last_retry is None or last_retry <= stale
        )
        pending = doc.status == DeliveryStatus.PENDING and (untouched or not stale_only)
        due = (
            doc.status == DeliveryStatus.FAILED
            and event.metadata.get(Key.NEXT_RETRY_AT) is not None
            and event.metadata[Key.NEXT_RETRY_AT] <= iso(now)
            and int(event.metadata.get(Key.RETRY_ATTEMPTS) or 0) < settings.DELIVERY_MAX_ATTEMPTS
        )
        if pending or due:
            chosen.append(event.pk)
    return chosen


@pytest.mark.parametrize("stale_only", [True, False])
def test_the_redrive_selects_what_its_rule_says(stale_only):
    now = timezone.now()
    case = _cases(now)
    expected = _deliverable_by_hand(now, stale_only=stale_only)
    selected = [e.id for e in revenue_events_deliverable(now=now, limit=100, stale_only=stale_only)]
    assert selected == expected
    assert case["failed due"] in selected and case["pending stale, retried long ago"] in selected
    assert case["pending fresh"] in selected if not stale_only else case["pending fresh"] not in selected
    # the limit takes the oldest ids first
    assert [e.id for e in revenue_events_deliverable(now=now, limit=2, stale_only=stale_only)] == expected[:2]


def test_the_failure_report_counts_what_its_rule_says():
    now = timezone.now()
    case = _cases(now)
    report = onchain_failure_report(hours=24, now=now)
    listed = {event["id"] for stream in report.by_stream for event in stream["events"]}  # type: ignore[attr-defined]
    # failed and critical events of the period, carried or not; pending ones left untouched
    # (not created, sent or re-queued) for over STALE_PENDING_MINUTES, not carried
    assert listed == {
        case["pending stale"],
        case["pending, sent and returned long ago"],
        case["failed due"],
        case["failed due, attempts exhausted"],
        case["failed not due"],
        case["failed due, carried"],
        case["critical"],
    }
    assert report.summary["total_failures"] == 7
    assert report.summary["stale_pending"] == 2
    assert report.summary["critical_failures"] == 1
    assert report.summary["needs_reconciliation"] == 1
    # waiting: every pending or failed event, carried ones included (also the one of 3 days ago)
    assert report.summary["events_waiting"] == 12
    assert report.summary["dust_carried"] == 2


# --------------------------------------------------------------------------- plans at scale

SCALE_EVENTS = 50_000
SCALE_FAILED = 500


@pytest.fixture
def at_scale() -> datetime:
    streams_ensure()
    seed_revenue_events(count=SCALE_EVENTS, failed=SCALE_FAILED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE revenue_revenueevent")  # what autovacuum does after such a load
    return timezone.now()


def _plans(work) -> list[str]:
    """The plan of every SELECT ``work`` runs on revenue events, as the planner chooses it
    (no planner setting changed)."""
    plans = select_plans(work, table="revenue_revenueevent")
    assert plans
    return plans


def _plan_tree(work) -> dict:
    """The planner's tree (EXPLAIN FORMAT JSON) of the one statement ``work`` runs."""
    with CaptureQueriesContext(connection) as captured:
        work()
    (query,) = captured.captured_queries
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {query['sql']}")
        (document,) = cursor.fetchone()
    return (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]


@pytest.mark.postgres
@pytest.mark.parametrize("stale_only", [True, False])
def test_the_redrive_batch_walks_its_index_in_id_order_and_stops(at_scale, stale_only):
    """One batch reads the partial index revenue_event_redrive in id order and the planner
    expects to stop after it: the limit costs a small part of the whole index scan. The
    regression: the status tested twice (the index's jsonb predicate and a ->> text test),
    the planner multiplied both estimates, expected ~20 rows where ~10,000 wait, so walking
    the index cost as much as reading it all, and a little noise in the statistics made it
    fetch every waiting event through a bitmap and sort them (38.5 ms at a million events)."""
    now = at_scale
    plan = _plan_tree(lambda: revenue_events_deliverable(now=now, limit=20, stale_only=stale_only))
    (scan,) = plan["Plans"]
    assert plan["Node Type"] == "Limit"
    assert (scan["Node Type"], scan["Index Name"]) == ("Index Scan", "revenue_event_redrive")
    waiting = len(revenue_events_deliverable(now=now, limit=SCALE_EVENTS, stale_only=stale_only))
    assert plan["Total Cost"] < scan["Total Cost"] / 2, (plan["Total Cost"], scan["Total Cost"])
    assert scan["Plan Rows"] > waiting / 10, (scan["Plan Rows"], waiting)


@pytest.mark.postgres
def test_the_failure_report_reads_indexes_and_only_the_events_needing_attention(at_scale):
    """No query of the report scans the events table, and the failures of the period come
    from revenue_event_attention (the regression: every event of the period through
    revenue_event_created, and every event for the waiting count)."""
    now = at_scale
    plans = _plans(lambda: onchain_failure_report(hours=24, now=now))
    for plan in plans:
        assert "Seq Scan on revenue_revenueevent" not in plan, plan
        assert "revenue_event_created" not in plan, plan
    failures = [plan for plan in plans if 'created_at" >=' in plan]
    assert len(failures) == 3  # the grouped counts, the holder shares per currency, the listed events
    assert all("revenue_event_attention" in plan for plan in failures), failures
    assert onchain_failure_report(hours=24, now=now).summary["total_failures"] > 0


@pytest.mark.postgres
@pytest.mark.parametrize(
    "status", [DeliveryStatus.SUBMITTED, DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.CRITICAL]
)
def test_the_admins_delivery_status_filter_reads_the_status_index(at_scale, admin_client, status):
    """The event list filtered by a delivery status (the operator's first look in an incident:
    the events in flight, the critical ones) counts and lists them through the status
    expression index. The regression: the filter compared the jsonb value (->), which no
    index serves for `submitted`: both the count and the page read every event (134 ms each at
    300,000 events, growing with the table)."""
    page = f"/admin/revenue/revenueevent/?delivery={status}"
    plans = _plans(lambda: admin_client.get(page))
    assert len(plans) >= 2  # the count and the page
    for plan in plans:
        assert "Seq Scan on revenue_revenueevent" not in plan, plan
    listed = admin_client.get(page).context["cl"].result_list
    assert listed and {row.status for row in listed} == {str(status)}


@pytest.mark.postgres
def test_the_stale_pending_count_and_its_admin_filter_read_the_status_index(at_scale, admin_client):
    """The worker status's stale pending count (revenue.reports.stale_pending_count) and the
    event list filtered on it (`?delivery=stale_pending`) read the pending events through
    the status expression index, not every event."""
    now = at_scale
    plans = _plans(lambda: stale_pending_count(now=now))
    plans += _plans(lambda: admin_client.get("/admin/revenue/revenueevent/?delivery=stale_pending"))
    assert len(plans) >= 3  # the count, and the list's count and page
    for plan in plans:
        assert "Seq Scan on revenue_revenueevent" not in plan, plan


@pytest.mark.postgres
def test_the_held_events_are_read_through_their_index(at_scale, admin_client):
    """Every batch looks at the held events (their share is more than the signer can pay)
    for those that fit again, and the report, the worker status and the admin's filter count
    them: through revenue_event_held, never every event."""
    RevenueEvent.objects.filter(
        pk__in=list(RevenueEvent.objects.order_by("-pk").values_list("pk", flat=True)[:3])
    ).update(
        metadata=JsonMerge(
            "metadata", {**patch_returned(), **patch_held(now=at_scale, cause="insufficient_funds", error="x")}
        )
    )
    plans = _plans(lambda: revenue_events_held())
    plans += _plans(lambda: held_count())
    plans += _plans(lambda: admin_client.get("/admin/revenue/revenueevent/?delivery=held"))
    assert len(plans) >= 4  # the selection, the count, and the list's count and page
    for plan in plans:
        assert "Seq Scan on revenue_revenueevent" not in plan, plan
    assert "revenue_event_held" in plans[0] and "revenue_event_held" in plans[1], plans[:2]
    assert len(revenue_events_held()) == held_count() == 3


def _event_queries(work) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        work()
    return [q["sql"] for q in captured.captured_queries if "revenue_revenueevent" in q["sql"]]


@pytest.mark.postgres
def test_the_unfiltered_event_list_reads_the_estimate_not_a_count_of_every_event(at_scale, admin_client):
    """The unfiltered list counted every event for its total (155 ms a page at 300,000
    events, growing with the table): it reads PostgreSQL's estimate and says "about". A
    filtered list still counts exactly, through the status index."""
    for page in ("/admin/revenue/revenueevent/", "/admin/revenue/revenueevent/?o=6"):
        queries = _event_queries(lambda page=page: admin_client.get(page))
        counts = [sql for sql in queries if "COUNT(" in sql.upper()]
        assert len(counts) == 1 and "LIMIT 10000" in counts[0], counts  # stops at 10,000 rows
        assert any("reltuples" in sql for sql in queries)
        response = admin_client.get(page)
        total = response.context["cl"].result_count
        assert SCALE_EVENTS * 0.8 <= total <= SCALE_EVENTS * 1.2  # ANALYZE's estimate
        assert f"about {total} revenue events (estimated)" in response.content.decode()
    filtered = "/admin/revenue/revenueevent/?delivery=critical"
    assert any("COUNT(" in sql.upper() for sql in _event_queries(lambda: admin_client.get(filtered)))
    response = admin_client.get(filtered)
    exact = RevenueEvent.objects.filter(**{f"metadata__{Key.STATUS}": "critical"}).count()
    assert response.context["cl"].result_count == exact and "(estimated)" not in response.content.decode()


def test_a_small_or_sqlite_event_list_counts_exactly(admin_client):
    """Counted on SQLite, and on PostgreSQL below 10,000 events whatever the statistics say
    (here: those of an earlier test's 50,000 events, rolled back)."""
    events_create(3, prefix="few")
    response = admin_client.get("/admin/revenue/revenueevent/")
    assert response.context["cl"].result_count == 3 and not response.context["cl"].paginator.estimated
    assert "3 revenue events" in response.content.decode() and "(estimated)" not in response.content.decode()


def test_the_streams_page_sums_the_events_once(admin_client):
    """Django asks for the list's columns twice a page: the dollar totals, a sum over every
    event (270 ms at 300,000 events), ran twice on each load."""
    streams_ensure()
    events_create(3, prefix="sum")
    queries = _event_queries(lambda: admin_client.get("/admin/revenue/revenuestream/"))
    assert len(queries) == 1, queries
    assert admin_client.get("/admin/revenue/revenuestream/").status_code == 200


@pytest.mark.postgres
@pytest.mark.parametrize("order", ["6", "-6"])  # the delivery column, ascending and descending
def test_the_event_list_sorted_by_delivery_status_walks_the_status_index(at_scale, admin_client, order):
    """Django breaks ties by `-pk` whatever the direction: sorted by delivery status
    ascending, the page's query could not walk the status expression index (status, id) and
    sorted every event (610-870 ms at 300,000 events). Ties go by id in the status's
    direction now, and both directions read the index and stop at the page."""
    page = f"/admin/revenue/revenueevent/?o={order}"
    (sql,) = [sql for sql in _event_queries(lambda: admin_client.get(page)) if "ORDER BY" in sql]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "revenue_event_delivery_status" in plan and "Sort" not in plan, plan
    rows = list(admin_client.get(page).context["cl"].result_list)
    keys = [(row.status, row.pk) for row in rows]
    assert len(rows) == 100 and keys == sorted(keys, reverse=order.startswith("-")), keys[:5]
