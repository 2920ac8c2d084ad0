from __future__ import annotations

import pytest
from django.utils import timezone

from revenue.delivery.metadata import DeliveryMetadata, DeliveryStatus, Key, patch_delivered, patch_failed
from revenue.models import RevenueEvent
from revenue.services import revenue_collect
from tests.revenue.delivery_support import event_patch

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def events(db):
    made = {}
    now = timezone.now()
    for source, patches in (
        ("s-fail", [patch_failed(attempts=2, error="boom", now=now, next_retry_at=now)]),
        ("s-crit", [patch_failed(attempts=5, error="boom", now=now, next_retry_at=None)]),
        (
            "s-done",
            [patch_delivered(batch_id=1, tx_hash="0xabc123", nonce=0, block_number=1, block_hash="0x1", now=now)],
        ),
        ("s-new", []),
    ):
        event = revenue_collect(stream=0, amount="5", description=source, source_type="t", source_id=source)
        event_patch(event.pk, *patches)
        made[source] = event
    return made


def test_event_list_shows_delivery_columns(admin_client, events):
    page = admin_client.get("/admin/revenue/revenueevent/").content.decode()
    assert "Trading Fees" in page and "failed" in page and "boom" in page and "0xabc123" in page
    assert ">critical<" in page
    assert "Failure report" in page


@pytest.mark.parametrize(
    ("value", "present", "absent"),
    [("failed", "s-fail", "s-done"), ("critical", "s-crit", "s-fail"), ("delivered", "s-done", "s-new")],
)
def test_filters_by_delivery_status(admin_client, events, value, present, absent):
    page = admin_client.get("/admin/revenue/revenueevent/", {"delivery": value}).content.decode()
    assert f"t:{present}" in page and f"t:{absent}" not in page


def test_filter_by_stream_and_search(admin_client, events):
    assert "t:s-new" not in admin_client.get("/admin/revenue/revenueevent/", {"stream__id__exact": 4}).content.decode()
    by_hash = admin_client.get("/admin/revenue/revenueevent/", {"q": "0xabc123"}).content.decode()
    assert "t:s-done" in by_hash and "t:s-fail" not in by_hash
    by_source = admin_client.get("/admin/revenue/revenueevent/", {"q": "s-crit"}).content.decode()
    assert "t:s-crit" in by_source and "t:s-new" not in by_source


def test_metadata_is_read_only_and_pretty(admin_client, events):
    page = admin_client.get(f"/admin/revenue/revenueevent/{events['s-fail'].pk}/change/").content.decode()
    assert f"&quot;{Key.STATUS}&quot;: &quot;{DeliveryStatus.FAILED}&quot;" in page  # indented JSON, escaped
    assert 'name="metadata"' not in page


def test_retry_action_queues_failed_events(admin_client, events):
    ids = [events["s-crit"].pk, events["s-done"].pk]
    response = admin_client.post(
        "/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "_selected_action": ids}, follow=True
    )
    text = response.content.decode()
    assert "1 queued, 1 skipped (in flight or delivered: delivered)." in text
    assert DeliveryMetadata.of(RevenueEvent.objects.get(pk=events["s-crit"].pk).metadata).status == "pending"
    assert DeliveryMetadata.of(RevenueEvent.objects.get(pk=events["s-done"].pk).metadata).status == "delivered"


@pytest.mark.parametrize("crafted", ["abc", "\x00", "99999999999999999999999", "-1", "\u0661"])
def test_retry_action_drops_a_selection_that_is_no_id(admin_client, events, crafted):
    """A crafted `_selected_action` names no event: not a 500 (Django's filter raised on it);
    alone, Django's "Items must be selected"; next to a real id, the real one is retried."""
    alone = admin_client.post(
        "/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "index": "0", "_selected_action": [crafted]}
    )
    assert alone.status_code == 302
    assert "Items must be selected" in admin_client.get(alone["Location"]).content.decode()
    with_real = admin_client.post(
        "/admin/revenue/revenueevent/",
        {"action": "retry_delivery_now", "index": "0", "_selected_action": [crafted, events["s-crit"].pk]},
        follow=True,
    )
    assert with_real.status_code == 200
    assert "1 queued" in with_real.content.decode()
    assert DeliveryMetadata.of(RevenueEvent.objects.get(pk=events["s-crit"].pk).metadata).status == "pending"


def test_failure_report_page(admin_client, events):
    page = admin_client.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert "On-chain delivery failure report" in page
    assert "Trading Fees" in page and "(1 critical)" in page
    assert '<meter min="0" max="100" value="100"' in page


def test_report_page_is_staff_only(client, user):
    client.force_login(user)
    response = client.get("/admin/revenue/revenueevent/failure-report/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/orders/order/",
        "/admin/orders/trade/",
        "/admin/orders/wallet/",
        "/admin/orders/tradeoutbox/",
        "/admin/django_celery_beat/periodictask/",
    ],
)
def test_operational_list_views_render(admin_client, events, path):
    assert admin_client.get(path).status_code == 200
