"""The admin desk: financial records are read-only for everyone (no add, change or delete;
posting answers 403, never 500); retrying a delivery is an audited service with a count
taken before the change, as a list action, a button on the event's page and on the
failure report; times read as times; the worker status is a page; the failure report
warns when delivery is paused or the chain unreachable."""

from __future__ import annotations

import html
import re
import socket
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from orders.engine.requests import OrderRequest
from orders.models import Deposit, Order, Trade, TradeOutbox, Wallet
from orders.services.orders import order_place
from revenue.delivery.metadata import (
    DeliveryMetadata,
    patch_amount,
    patch_carried,
    patch_delivered,
    patch_failed,
    patch_held,
    patch_submitted,
)
from revenue.delivery.selectors import bundle_item_id
from revenue.models import (
    ChainDeployment,
    DeliveryBatch,
    DeliveryBundle,
    DeliveryHeartbeat,
    RevenueEvent,
    StaffAction,
    StaffActionOutcome,
)
from revenue.services import revenue_collect
from tests.factories import StaffFactory, UserFactory, fund, market_create
from tests.revenue.delivery_support import event_patch

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(client, staff):
    client.force_login(staff)
    return client


def _event(source: str, *patches) -> RevenueEvent:
    event = revenue_collect(stream=0, amount="5", description=source, source_type="t", source_id=source)
    event_patch(event.pk, *patches)
    return event


@pytest.fixture
def records(db):
    """One record of every financial model."""
    now = timezone.now()
    market_create("ETH-USDT")
    maker, taker = UserFactory(), UserFactory()
    fund(maker, "ETH", "1")
    fund(taker, "USDT", "10000")
    order_place(user=maker, request=OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="0.1",
                                                 price="2000.00"))  # fmt: skip
    order_place(user=taker, request=OrderRequest(market="ETH-USDT", side="buy", type="limit", quantity="0.1",
                                                 price="2000.00"))  # fmt: skip
    deployment = ChainDeployment.objects.create(
        chain_id=31337, contract_address="0x" + "1" * 40, signer_address="0x" + "2" * 40, deployed_at=now
    )
    event = _event("desk-1", patch_failed(attempts=5, error="boom", now=now, next_retry_at=None))
    batch = DeliveryBatch.objects.create(
        deployment=deployment, size=1, value_wei="1", nonce=0, gas=1, max_fee_per_gas=1, max_priority_fee_per_gas=1,
        submitted_at=now, item_ids=[event.pk], event_ids=[event.pk],
    )  # fmt: skip
    bundle = DeliveryBundle.objects.create(stream_id=0, amount_wei="1", created_at=now)
    StaffAction.objects.create(
        actor_username="x", action="delivery_retry", target_type="revenue_event", target_id=event.pk,
        from_state="failed", to_state="pending", outcome="done", via="api",
    )  # fmt: skip
    return {
        RevenueEvent: event,
        DeliveryBatch: batch,
        DeliveryBundle: bundle,
        ChainDeployment: deployment,
        Trade: Trade.objects.get(),
        TradeOutbox: TradeOutbox.objects.first(),
        Deposit: Deposit.objects.first(),
        Wallet: Wallet.objects.first(),
        Order: Order.objects.first(),
        StaffAction: StaffAction.objects.get(),
    }


FINANCIAL = [RevenueEvent, DeliveryBatch, DeliveryBundle, ChainDeployment, Trade, TradeOutbox, Deposit, Wallet, Order,
             StaffAction]  # fmt: skip


def _base(model) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


@pytest.mark.parametrize("model", FINANCIAL, ids=lambda m: m.__name__)
def test_financial_records_are_read_only_for_a_superuser(desk, records, model):
    obj = records[model]
    assert obj is not None
    base = _base(model)
    listing = desk.get(base)
    assert listing.status_code == 200
    page = listing.content.decode()
    assert f'href="{base}add/"' not in page
    assert 'value="delete_selected"' not in page
    view = desk.get(f"{base}{obj.pk}/change/")
    assert view.status_code == 200
    assert 'name="_save"' not in view.content.decode() and 'name="_continue"' not in view.content.decode()
    before = model.objects.count()
    assert desk.get(f"{base}add/").status_code == 403
    assert desk.post(f"{base}add/", {}).status_code == 403  # an empty batch was a 500 (IntegrityError)
    assert desk.post(f"{base}{obj.pk}/change/", {"id": obj.pk}).status_code == 403
    assert desk.get(f"{base}{obj.pk}/delete/").status_code == 403
    assert desk.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = desk.post(base, {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
    assert bulk.status_code in (200, 302)  # the unknown action is refused with a message
    assert model.objects.count() == before
    assert model.objects.filter(pk=obj.pk).exists()


def test_an_event_cannot_be_changed_or_deleted_and_keeps_its_amounts(desk, records):
    event = records[RevenueEvent]
    response = desk.post(f"/admin/revenue/revenueevent/{event.pk}/change/", {"gross_amount": "1", "description": "x"})
    assert response.status_code == 403
    event.refresh_from_db()
    assert (event.gross_amount, event.description) == (5, "desk-1")


# --- retry: counted before the change, audited, three doors -----------------------------------


@pytest.fixture
def mixed(db):
    now = timezone.now()
    return {
        "failed": _event("m-fail", patch_failed(attempts=2, error="boom", now=now, next_retry_at=now)),
        "critical": _event("m-crit", patch_failed(attempts=5, error="boom", now=now, next_retry_at=None)),
        "critical2": _event("m-crit2", patch_failed(attempts=5, error="boom", now=now, next_retry_at=None)),
        "delivered": _event(
            "m-done", patch_delivered(batch_id=1, tx_hash="0xabc", nonce=0, block_number=1, block_hash="0x1", now=now)
        ),
        "submitted": _event("m-sub", patch_submitted(batch_id=2, tx_hash="0xdef", nonce=1, now=now)),
    }


def _status(event: RevenueEvent) -> str:
    return str(DeliveryMetadata.of(RevenueEvent.objects.get(pk=event.pk).metadata).status)


def test_the_retry_action_counts_before_the_change_and_audits_each_event(desk, staff, mixed):
    ids = [e.pk for e in mixed.values()]
    response = desk.post("/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "_selected_action": ids},
                         follow=True)  # fmt: skip
    text = response.content.decode()
    assert (
        "3 queued, 2 skipped (in flight or delivered: delivered, submitted); an event in a batch stuck in flight "
        "is freed by abandoning its batch." in text
    )
    assert [_status(mixed[k]) for k in ("failed", "critical", "critical2", "delivered", "submitted")] == [
        "pending", "pending", "pending", "delivered", "submitted"
    ]  # fmt: skip
    trail = {a.target_id: a for a in StaffAction.objects.all()}
    assert set(trail) == set(ids)
    for key, (before, after, outcome) in {
        "failed": ("failed", "pending", StaffActionOutcome.DONE),
        "critical": ("critical", "pending", StaffActionOutcome.DONE),
        "delivered": ("delivered", "delivered", StaffActionOutcome.SKIPPED),
        "submitted": ("submitted", "submitted", StaffActionOutcome.SKIPPED),
    }.items():
        action = trail[mixed[key].pk]
        assert (action.from_state, action.to_state, action.outcome) == (before, after, outcome), key
        assert (action.actor_id, action.actor_username, action.via) == (staff.pk, staff.username, "admin")
        assert abs(action.at - timezone.now()) < timedelta(minutes=1)
    # Again: everything is now pending or in flight; pending events are queued afresh.
    again = desk.post("/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "_selected_action": ids},
                      follow=True)  # fmt: skip
    assert "3 queued, 2 skipped" in again.content.decode()


def test_retrying_dust_carried_forward_says_it_waits_for_its_bundle(desk, staff, mixed, staff_client):
    """A pending share carried forward as dust waits for its stream's bundle whatever staff
    do: the retry answered "1 queued" (202 "queued" through the API), audited as done,
    and nothing moved; the operator was told it would go with the next cycle."""
    now = timezone.now()
    dust = _event("m-dust", patch_carried(now=now), patch_amount(5))
    response = desk.post("/admin/revenue/revenueevent/", {"action": "retry_delivery_now",
                         "_selected_action": [dust.pk, mixed["critical"].pk]}, follow=True)  # fmt: skip
    assert 'class="warning"' in response.content.decode()
    assert (
        "1 queued, 1 skipped (1 dust carried forward: paid with its stream's bundle once the stream's dust is worth "
        "a payment or its oldest share has waited 1 week; a retry cannot send it sooner)."
        in html.unescape(response.content.decode())
    )
    document = DeliveryMetadata.of(RevenueEvent.objects.get(pk=dust.pk).metadata)
    assert document.status == "pending" and document.carried_at is not None
    action = StaffAction.objects.get(target_id=dust.pk)
    assert (action.from_state, action.to_state, action.outcome) == ("pending", "pending", StaffActionOutcome.SKIPPED)
    assert action.detail == "dust carried forward"
    answer = staff_client.post(f"/api/admin/revenue/events/{dust.pk}/retry")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "event_not_retryable"
    assert "dust carried forward" in answer.json()["error"]["message"]


def test_retrying_every_event_at_once_is_refused_with_what_to_do(desk, mixed, monkeypatch):
    """A "select all" over an unfiltered list handed every event to one retry: each locked
    and audited in one transaction (on SQLite a 500 past its bound-variable limit, 250,000 in
    Debian's build; on PostgreSQL the delivery worker waited behind millions of row locks)."""
    import revenue.staff_actions as staff_actions
    from core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        staff_actions.revenue_events_delivery_retry(event_ids=range(1, 1002), actor=None, via="admin")
    monkeypatch.setattr(staff_actions, "RETRY_MAX_EVENTS", 4)
    response = desk.post("/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "select_across": "1",
                         "index": "0", "_selected_action": [mixed["failed"].pk]}, follow=True)  # fmt: skip
    assert (
        "At most 4 events at once, nothing was queued: filter the list by delivery status (critical, failed) first."
        in html.unescape(response.content.decode())
    )
    assert not StaffAction.objects.exists() and _status(mixed["critical"]) == "critical"


def test_the_event_page_has_a_retry_button_that_posts(desk, staff, mixed):
    event = mixed["critical"]
    page = desk.get(f"/admin/revenue/revenueevent/{event.pk}/change/").content.decode()
    assert f'action="/admin/revenue/revenueevent/{event.pk}/retry/"' in page and 'id="retry-delivery"' in page
    delivered_page = desk.get(f"/admin/revenue/revenueevent/{mixed['delivered'].pk}/change/").content.decode()
    assert 'id="retry-delivery"' not in delivered_page
    assert desk.get(f"/admin/revenue/revenueevent/{event.pk}/retry/").status_code == 405
    response = desk.post(f"/admin/revenue/revenueevent/{event.pk}/retry/")
    assert (response.status_code, response["Location"]) == (302, f"/admin/revenue/revenueevent/{event.pk}/change/")
    assert _status(event) == "pending"
    assert StaffAction.objects.get(target_id=event.pk).from_state == "critical"
    followed = desk.get(response["Location"]).content.decode()
    assert f"Event {event.pk}: 1 queued, 0 skipped." in followed
    skipped = desk.post(f"/admin/revenue/revenueevent/{mixed['delivered'].pk}/retry/", follow=True)
    assert "0 queued, 1 skipped (in flight or delivered: delivered)." in skipped.content.decode()
    assert desk.post("/admin/revenue/revenueevent/999999/retry/").status_code == 404


def test_a_retry_while_delivery_is_paused_or_disabled_says_the_events_wait(desk, mixed, settings):
    """A retry answered "1 queued" while delivery was paused, as if the event were on its way:
    it waits for the cause to go, which the answer now says, with the cause."""
    answer = desk.post(f"/admin/revenue/revenueevent/{mixed['failed'].pk}/retry/", follow=True).content.decode()
    assert "1 queued, 0 skipped." in answer and "Delivery is paused" not in answer
    DeliveryHeartbeat.objects.create(
        pk=1, last_run_at=timezone.now(), pause_cause="insufficient_funds", pause_detail="the signer holds 0 wei",
        paused_since=timezone.now(),
    )  # fmt: skip
    answer = html.unescape(
        desk.post(f"/admin/revenue/revenueevent/{mixed['critical'].pk}/retry/", follow=True).content.decode()
    )
    assert "1 queued, 0 skipped." in answer
    assert "Delivery is paused (insufficient_funds: the signer holds 0 wei): the events queued wait" in answer
    action = html.unescape(desk.post("/admin/revenue/revenueevent/", {
        "action": "retry_delivery_now", "_selected_action": [mixed["critical2"].pk],
    }, follow=True).content.decode())  # fmt: skip
    assert "1 queued, 0 skipped." in action and "Delivery is paused (insufficient_funds" in action
    # Nothing queued: nothing to say about waiting.
    skipped = desk.post(f"/admin/revenue/revenueevent/{mixed['delivered'].pk}/retry/", follow=True).content.decode()
    assert "Delivery is paused" not in skipped
    settings.DELIVERY_ENABLED = False
    disabled = desk.post(f"/admin/revenue/revenueevent/{mixed['failed'].pk}/retry/", follow=True).content.decode()
    assert "Delivery is disabled (DELIVERY_ENABLED is off)" in disabled


def test_the_failure_report_has_retry_buttons_that_come_back_to_it(desk, mixed):
    report = desk.get("/admin/revenue/revenueevent/failure-report/?hours=48").content.decode()
    for key in ("failed", "critical"):
        assert f'action="/admin/revenue/revenueevent/{mixed[key].pk}/retry/"' in report
    response = desk.post(
        f"/admin/revenue/revenueevent/{mixed['failed'].pk}/retry/",
        {"next": "/admin/revenue/revenueevent/failure-report/?hours=48"},
    )
    assert response["Location"] == "/admin/revenue/revenueevent/failure-report/?hours=48"
    assert _status(mixed["failed"]) == "pending"
    away = desk.post(f"/admin/revenue/revenueevent/{mixed['critical'].pk}/retry/", {"next": "https://evil.example/"})
    assert away["Location"] == f"/admin/revenue/revenueevent/{mixed['critical'].pk}/change/"


def test_retrying_needs_the_permission(client, mixed):
    viewer = StaffFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_revenueevent"))
    client.force_login(viewer)
    event = mixed["critical"]
    page = client.get(f"/admin/revenue/revenueevent/{event.pk}/change/")
    assert page.status_code == 200 and 'id="retry-delivery"' not in page.content.decode()
    assert client.post(f"/admin/revenue/revenueevent/{event.pk}/retry/").status_code == 403
    listing = client.get("/admin/revenue/revenueevent/").content.decode()
    assert 'value="retry_delivery_now"' not in listing
    assert _status(event) == "critical"
    assert not StaffAction.objects.exists()
    viewer.user_permissions.add(Permission.objects.get(codename="retry_delivery"))
    assert client.post(f"/admin/revenue/revenueevent/{event.pk}/retry/").status_code == 302
    assert _status(event) == "pending"


def test_staff_who_may_only_retry_see_the_events_they_retry(client, mixed):
    # A staff account given revenue.retry_delivery alone got "You don't have permission to
    # view or edit anything." at /admin/ and 403 on the event list and the failure report:
    # it could retry only by posting to an address it had no page to find. Retrying implies
    # seeing the events, as Django's change permission implies view.
    retrier = StaffFactory(is_superuser=False)
    retrier.user_permissions.add(Permission.objects.get(codename="retry_delivery"))
    client.force_login(retrier)
    assert 'href="/admin/revenue/revenueevent/"' in client.get("/admin/").content.decode()
    listing = client.get("/admin/revenue/revenueevent/")
    assert listing.status_code == 200 and 'value="retry_delivery_now"' in listing.content.decode()
    event = mixed["critical"]
    page = client.get(f"/admin/revenue/revenueevent/{event.pk}/change/")
    assert page.status_code == 200 and 'id="retry-delivery"' in page.content.decode()
    assert client.get("/admin/revenue/revenueevent/failure-report/").status_code == 200
    assert client.get("/admin/revenue/revenueevent/worker-status/").status_code == 200
    assert "/admin/revenue/revenueevent/failure-report/" in client.get("/flywheel/").content.decode()
    assert client.post(f"/admin/revenue/revenueevent/{event.pk}/retry/").status_code == 302
    assert _status(event) == "pending"
    assert client.post(f"/admin/revenue/revenueevent/{event.pk}/change/", {}).status_code == 403


def test_the_api_retry_is_audited_too(staff_client, staff, mixed):
    event = mixed["failed"]
    assert staff_client.post(f"/api/admin/revenue/events/{event.pk}/retry").status_code == 202
    action = StaffAction.objects.get()
    assert (action.via, action.actor_username, action.from_state, action.outcome) == (
        "api", staff.username, "failed", "done"
    )  # fmt: skip


# --- human times, the worker status page, the banners --------------------------------------------


def test_next_retry_reads_as_a_time(desk, db):
    at = timezone.now() + timedelta(minutes=3)
    _event("t-fail", patch_failed(attempts=1, error="boom", now=timezone.now(), next_retry_at=at))
    page = desk.get("/admin/revenue/revenueevent/").content.decode()
    assert f"{at:%Y-%m-%d %H:%M:%S} UTC (" in page
    assert re.search(r"\(\d+\xa0minutes from now\)|\(2\xa0minutes from now\)|from now\)", page)
    assert at.isoformat()[:19] not in page  # no raw ISO text


def test_the_event_page_reads_its_delivery_in_words(desk, db):
    at = timezone.now() + timedelta(minutes=8)
    event = _event("p-fail", patch_failed(attempts=3, error="reverted: boom", now=timezone.now(), next_retry_at=at))
    page = desk.get(f"/admin/revenue/revenueevent/{event.pk}/change/").content.decode()
    assert f"{at:%Y-%m-%d %H:%M:%S} UTC (" in page and "from now)" in page
    assert "reverted: boom" in page and ">failed<" in page


def test_dust_carried_forward_reads_as_such_and_offers_no_retry(desk, db):
    """A share carried forward waits days for its stream's bundle, on purpose and with no
    alert: the list and its page read a bare "pending", and offered a retry that cannot
    send it sooner."""
    carried_at = timezone.now() - timedelta(days=2)
    dust = _event("p-dust", patch_carried(now=carried_at), patch_amount(5))
    expected = f"pending (dust carried forward since {carried_at:%Y-%m-%d %H:%M:%S} UTC ("
    assert expected in html.unescape(desk.get("/admin/revenue/revenueevent/").content.decode())
    page = html.unescape(desk.get(f"/admin/revenue/revenueevent/{dust.pk}/change/").content.decode())
    assert expected in page and 'id="retry-delivery"' not in page


def test_a_batch_in_flight_is_found_by_its_events_tx_hash_and_the_two_pages_link_each_other(desk, db):
    """An event in flight names its batch's latest signed version (its transaction hash): the batch list's
    search looked at mined_tx_hash only, empty until the batch is mined, and found nothing;
    the event's batch was an id in its metadata, the batch's events bare ids."""
    now = timezone.now()
    deployment = ChainDeployment.objects.create(
        chain_id=31337, contract_address="0x" + "1" * 40, signer_address="0x" + "2" * 40, deployed_at=now
    )
    first, latest = "0x" + "a" * 64, "0x" + "b" * 64
    events = [_event(f"fl-{n}") for n in range(2)]
    other = _event("fl-other")
    batch = DeliveryBatch.objects.create(
        deployment=deployment, size=2, value_wei="2", nonce=4, gas=1, max_fee_per_gas=1, max_priority_fee_per_gas=1,
        submitted_at=now, item_ids=[e.pk for e in events], event_ids=[e.pk for e in events], tx_hashes=[first, latest],
    )  # fmt: skip
    for event in events:
        event_patch(event.pk, patch_submitted(batch_id=batch.pk, tx_hash=latest, nonce=4, now=now))
    batch_page = f"/admin/revenue/deliverybatch/{batch.pk}/change/"

    event_page = desk.get(f"/admin/revenue/revenueevent/{events[0].pk}/change/").content.decode()
    assert f'<a href="{batch_page}" id="event-batch">delivery batch {batch.pk}</a>' in event_page
    assert 'id="event-batch"' not in desk.get(f"/admin/revenue/revenueevent/{other.pk}/change/").content.decode()

    for term in (latest, first[:20].upper()):
        found = desk.get("/admin/revenue/deliverybatch/", {"q": term})
        assert found.status_code == 200 and [b.pk for b in found.context["cl"].result_list] == [batch.pk]
    assert not desk.get("/admin/revenue/deliverybatch/", {"q": "0x" + "c" * 64}).context["cl"].result_list

    page = html.unescape(desk.get(batch_page).content.decode())
    link = re.search(r'<a href="([^"]+)" id="batch-events">2 event\(s\)</a>', page)
    assert link is not None
    listed = desk.get(link.group(1))
    assert listed.status_code == 200
    assert sorted(e.pk for e in listed.context["cl"].result_list) == sorted(e.pk for e in events)


def test_a_batch_page_lists_the_events_left_out_of_its_latest_version(desk, db):
    """Items left out of a version re-signed smaller for funds stay submitted under the batch
    (the earlier version may be mined): their event pages named the batch, the batch's page
    listed only its latest version's events (left_out_item_ids, bare item ids, bundles unexpanded)."""
    now = timezone.now()
    deployment = ChainDeployment.objects.create(
        chain_id=31337, contract_address="0x" + "1" * 40, signer_address="0x" + "2" * 40, deployed_at=now
    )
    kept, alone = _event("lo-kept"), _event("lo-alone")
    dust = [_event(f"lo-dust-{n}") for n in range(2)]
    bundle = DeliveryBundle.objects.create(stream_id=0, event_ids=[e.pk for e in dust], amount_wei="2", created_at=now)
    batch = DeliveryBatch.objects.create(
        deployment=deployment, size=1, value_wei="1", nonce=7, gas=1, max_fee_per_gas=1, max_priority_fee_per_gas=1,
        submitted_at=now, item_ids=[kept.pk], event_ids=[kept.pk], tx_hashes=["0x" + "a" * 64, "0x" + "b" * 64],
        left_out_item_ids=[alone.pk, bundle_item_id(bundle_id=bundle.pk)],
    )  # fmt: skip
    page = html.unescape(desk.get(f"/admin/revenue/deliverybatch/{batch.pk}/change/").content.decode())
    link = re.search(r'<a href="([^"]+)" id="batch-left-out-events">3 event\(s\)</a>', page)
    assert link is not None
    listed = desk.get(link.group(1))
    assert sorted(e.pk for e in listed.context["cl"].result_list) == sorted([alone.pk, *(e.pk for e in dust)])

    batch.left_out_item_ids = []
    batch.save(update_fields=["left_out_item_ids"])
    page = desk.get(f"/admin/revenue/deliverybatch/{batch.pk}/change/").content.decode()
    assert 'id="batch-left-out-events"' not in page and 'id="batch-events"' in page


def test_streams_can_be_reworded_but_not_added_deleted_or_recounted(desk, db):
    from revenue.models import RevenueStream

    stream = RevenueStream.objects.get(pk=0)
    collected = stream.collected
    assert desk.post("/admin/revenue/revenuestream/add/", {"name": "x"}).status_code == 403
    assert desk.post(f"/admin/revenue/revenuestream/{stream.pk}/delete/", {"post": "yes"}).status_code == 403
    response = desk.post(f"/admin/revenue/revenuestream/{stream.pk}/change/", {
        "name": "Trading fees", "description": stream.description, "target_monthly": "123.00",
        "collected": "999999",
    })  # fmt: skip
    assert response.status_code == 302
    stream.refresh_from_db()
    assert (stream.name, stream.target_monthly, stream.collected) == ("Trading fees", 123, collected)


def test_streams_show_their_totals_in_dollars_each_currency_at_its_rate(desk, db):
    """A stream's own `collected` and `distributed` add every currency as it is: the list read
    10.01 collected for 10 USDT and 0.01 ETH (worth 20 USD at ETH-USDT's 2,000)."""
    market_create("ETH-USDT", reference_price="2000.00")
    now = timezone.now()
    paid = patch_delivered(batch_id=1, tx_hash="0x" + "a" * 64, nonce=0, block_number=1, block_hash="0x" + "b" * 64,
                           now=now)  # fmt: skip
    usdt = revenue_collect(stream=0, amount="10", description="u", source_type="t", source_id="usdt")
    eth = revenue_collect(stream=0, amount="0.01", description="e", source_type="t", source_id="eth", currency="ETH")
    revenue_collect(stream=0, amount="4", description="w", source_type="t", source_id="waiting")  # not delivered
    event_patch(usdt.pk, paid)
    event_patch(eth.pk, paid)
    listed = desk.get("/admin/revenue/revenuestream/").content.decode()
    assert '<td class="field-collected_usd">34</td>' in listed  # 10 + 4 + 0.01 x 2,000
    assert '<td class="field-distributed_usd">4.5</td>' in listed  # 1.5 + 0.0015 x 2,000
    page = desk.get("/admin/revenue/revenuestream/0/change/").content.decode()
    assert re.search(r"collected \(USD\):</label>\s*<div class=\"readonly\">34</div>", page, re.I), page
    assert re.search(r"distributed to holders \(USD\):</label>\s*<div class=\"readonly\">4.5</div>", page, re.I)


def test_a_stream_target_cannot_be_negative(desk, db):
    # The public figures read it (GET /api/flywheel/revenue-streams: target_monthly, progress).
    from django.db import IntegrityError, transaction

    from revenue.models import RevenueStream

    stream = RevenueStream.objects.get(pk=0)
    response = desk.post(f"/admin/revenue/revenuestream/{stream.pk}/change/", {
        "name": stream.name, "description": stream.description, "target_monthly": "-5",
    })  # fmt: skip
    assert response.status_code == 200 and "id_target_monthly_error" in response.content.decode()
    assert RevenueStream.objects.get(pk=0).target_monthly == stream.target_monthly
    with pytest.raises(IntegrityError), transaction.atomic():
        RevenueStream.objects.filter(pk=0).update(target_monthly=-1)


def test_worker_status_is_an_admin_page(desk, db):
    now = timezone.now()
    DeliveryHeartbeat.objects.create(
        pk=1, last_run_at=now - timedelta(minutes=2), last_error="node_unreachable: connection refused",
        last_error_at=now - timedelta(minutes=2), connected=True, chain_id=31337, block_number=120,
        finalized_block=56, contract_address="0x" + "a" * 40, signer_address="0x" + "b" * 40,
        signer_balance_wei=str(12 * 10**17), items_paid=7,
    )  # fmt: skip
    response = desk.get("/admin/revenue/revenueevent/worker-status/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "31337" in page and "0x" + "a" * 40 in page and "0x" + "b" * 40 in page
    assert "1.200000 ETH" in page
    assert "node_unreachable: connection refused" in page
    assert "2\xa0minutes ago" in page
    assert 'id="banner-chain"' not in page
    listing = desk.get("/admin/revenue/revenueevent/").content.decode()
    assert 'href="/admin/revenue/revenueevent/worker-status/"' in listing


def test_worker_status_without_a_heartbeat_says_the_worker_never_ran(desk, db):
    page = desk.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    assert "never: the chain worker or beat is not running" in page


def test_worker_status_says_when_beat_no_longer_re_drives(desk, db):
    redrive = PeriodicTask.objects.filter(task="revenue.tasks.revenue_delivery_redrive")
    assert re.search(r'id="redrive">60 s;', desk.get("/admin/revenue/revenueevent/worker-status/").content.decode())
    redrive.update(enabled=False)
    page = html.unescape(desk.get("/admin/revenue/revenueevent/worker-status/").content.decode())
    assert 'never: beat\'s task "revenue: re-drive on-chain delivery" is disabled or missing' in page


def test_the_staff_nav_links_the_worker_status_page(desk, db):
    page = desk.get("/flywheel/").content.decode()
    assert 'href="/admin/revenue/revenueevent/worker-status/"' in page


def test_the_report_warns_when_delivery_is_paused(desk, db):
    now = timezone.now()
    DeliveryHeartbeat.objects.create(pk=1, last_run_at=now, connected=True, pause_cause="insufficient_funds",
                                     pause_detail="signer balance 0", paused_since=now)  # fmt: skip
    page = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert 'id="banner-paused"' in page and "insufficient_funds" in page
    assert 'id="banner-chain"' not in page


def test_a_held_event_is_shown_on_the_report_the_worker_status_and_its_list(desk, db):
    """An event held because the signer cannot pay its share: a card on the failure report
    (linking its list), its cause beside its status in the report's table, a line on the
    worker status, and the event list's filter `?delivery=held`."""
    now = timezone.now()
    held = _event("held", patch_held(now=now, cause="insufficient_funds", error="held (insufficient_funds): 7e34 wei"))
    other = _event("other")
    page = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert re.search(r'id="held-for-funds"[^>]*>1<', page) and "?delivery=held" in page
    assert "pending (held: insufficient_funds)" in page and "7e34 wei" in page
    status = desk.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    assert re.search(r'id="held-for-funds"[^>]*>1', status)
    listed = desk.get("/admin/revenue/revenueevent/?delivery=held").context["cl"].result_list
    assert [row.pk for row in listed] == [held.pk] and other.pk != held.pk


def test_the_report_warns_when_the_chain_is_unreachable(desk, settings, db):
    DeliveryHeartbeat.objects.create(pk=1, last_run_at=timezone.now(), connected=False)
    page = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert 'id="banner-chain"' in page
    # And from the web process: a configured node that does not answer.
    DeliveryHeartbeat.objects.all().delete()
    settings.WEB3_PROVIDER_URI = "http://127.0.0.1:9"  # discard port: refused at once
    page = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert 'id="banner-chain"' in page
    status = desk.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    assert "unreachable" in status


@pytest.fixture
def silent_node():
    """A node that takes connections and never answers (a hung process, a black-holed
    route): each request to it costs the full timeout. Yields its URI and the connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    taken: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                taken.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", taken
    stop.set()
    thread.join()
    for connection in taken:
        connection.close()
    server.close()


def test_the_worker_status_asks_a_silent_node_once(desk, settings, silent_node):
    """The page asked the node twice (once to show it, once for the banner): a node that
    does not answer cost its timeout twice, 4 s before the page showed."""
    uri, taken = silent_node
    settings.WEB3_PROVIDER_URI = uri
    DeliveryHeartbeat.objects.create(pk=1, last_run_at=timezone.now(), connected=False)
    for page in ("worker-status", "failure-report"):
        taken.clear()
        answer = desk.get(f"/admin/revenue/revenueevent/{page}/").content.decode()
        assert 'id="banner-chain"' in answer or "unreachable" in answer
        assert len(taken) == 1, (page, len(taken))


def test_a_resolved_worker_error_does_not_read_as_current(desk, db):
    """The heartbeat keeps the worker's last error after later successes: both pages showed it
    in red as the worker's state (the failure report: "insufficient_funds: ..." under the
    worker's last run an hour after the signer was funded and every cycle had succeeded)."""
    now = timezone.now()
    error = "insufficient_funds: the signer holds 0 wei"
    DeliveryHeartbeat.objects.create(
        pk=1, last_run_at=now, last_success_at=now, last_error=error, last_error_at=now - timedelta(hours=1),
        connected=True,
    )  # fmt: skip
    report = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert 'id="worker-error"' not in report and "insufficient_funds" not in report
    status = desk.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    cell = re.search(r'<td id="last-error">(.*?)</td>', status, re.S).group(1)
    assert error in cell and "resolved" in cell and "ws-bad" not in cell
    # The last cycle failed: the error is the worker's state, in red on both pages.
    DeliveryHeartbeat.objects.filter(pk=1).update(last_error_at=now, last_success_at=now - timedelta(minutes=1))
    report = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert f'<span class="fr-critical" id="worker-error">{error}</span>' in report
    status = desk.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    cell = re.search(r'<td id="last-error">(.*?)</td>', status, re.S).group(1)
    assert f'<span class="ws-bad">{error}</span>' in cell and "resolved" not in cell


def test_the_report_says_when_critical_events_are_older_than_its_window(desk, db):
    """The window is by creation time: an event created three days ago that went critical
    today (after a long pause, its attempts unused meanwhile) was counted by the alert and the
    worker status, while the default report said "No failures in the last 24 hours"."""
    now = timezone.now()
    old = _event("old-critical", patch_failed(attempts=5, error="reverted: boom", now=now, next_retry_at=None))
    RevenueEvent.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=3))
    _event("new-critical", patch_failed(attempts=5, error="reverted: boom", now=now, next_retry_at=None))
    page = html.unescape(desk.get("/admin/revenue/revenueevent/failure-report/").content.decode())
    note = re.search(r'<p class="errornote" role="alert" id="critical-outside">(.*?)</p>', page, re.S)
    assert note is not None and note.group(1).startswith("1 more critical event(s) were created before")
    assert '<a href="/admin/revenue/revenueevent/?delivery=critical">' in note.group(1)
    listed = desk.get("/admin/revenue/revenueevent/?delivery=critical").context["cl"].result_list
    assert old.pk in {event.pk for event in listed}
    wide = desk.get("/admin/revenue/revenueevent/failure-report/?hours=96").content.decode()
    assert 'id="critical-outside"' not in wide


def test_no_banner_when_all_is_well(desk, db):
    DeliveryHeartbeat.objects.create(pk=1, last_run_at=timezone.now(), connected=True)
    page = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert 'id="banner-chain"' not in page and 'id="banner-paused"' not in page


@pytest.mark.parametrize("last_run", [None, timedelta(minutes=11)], ids=["never", "11 minutes ago"])
def test_the_pages_say_when_the_chain_worker_stopped_running(desk, db, last_run):
    """A chain worker (or beat) that stopped left the pages as they were: its last run read
    "3 hours ago" in a corner among green figures, the report's counts frozen, no word of it."""
    if last_run is not None:
        DeliveryHeartbeat.objects.create(pk=1, last_run_at=timezone.now() - last_run, connected=True)
    for path in ("failure-report", "worker-status"):
        page = desk.get(f"/admin/revenue/revenueevent/{path}/").content.decode()
        assert 'id="banner-stalled"' in page and "<code>chain</code> and <code>beat</code> processes" in page, path
    DeliveryHeartbeat.objects.update_or_create(pk=1, defaults={"last_run_at": timezone.now() - timedelta(minutes=9)})
    for path in ("failure-report", "worker-status"):
        assert 'id="banner-stalled"' not in desk.get(f"/admin/revenue/revenueevent/{path}/").content.decode()


def test_the_reports_holder_share_pending_is_exact_as_the_api_gives_it(desk, db):
    """The card read `floatformat:2`: 0.006 owed to holders read 0.01 (rounded up), 0.004
    read 0.00 beside a failure; the API says 0.00600000."""
    now = timezone.now()
    revenue_collect(stream=0, amount="0.04", description="small", source_type="t", source_id="small")
    event = RevenueEvent.objects.get(source_id="small")
    event_patch(event.pk, patch_failed(attempts=1, error="boom", now=now, next_retry_at=now))
    page = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    card = re.search(r"Holder share pending \(USD\)<strong>([^<]*)</strong>", page)
    assert card is not None and card.group(1) == "0.006"


def test_the_reports_events_say_their_currency_beside_the_dollar_totals(desk, db):
    """An ETH-BTC market's event owes its holder share in BTC: its row read a bare 0.00009
    under a stream total of 5.4 (dollars, at BTC-USDT's 60,000), as if the sum were wrong."""
    market_create("BTC-USDT", reference_price="60000.00")
    now = timezone.now()
    btc = revenue_collect(stream=0, amount="0.0006", description="b", source_type="t", source_id="btc", currency="BTC")
    event_patch(btc.pk, patch_failed(attempts=1, error="boom", now=now, next_retry_at=now))
    assert btc.holder_share == Decimal("0.00009")
    page = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert f"{btc.pk}</a></td><td>0.00009 BTC</td>" in page
    assert "Trading Fees: 1 event(s), holder share 5.4 USD," in page
    assert re.search(r"Holder share pending \(USD\)<strong>5.4</strong>", page)


def test_the_events_staff_actions_link_lists_that_events_actions_only(desk, mixed):
    """The link searched `?q=<id>`: the search is also a substring of the correlation ids
    (hex) and usernames, so event 1's link listed every staff action."""
    ids = [e.pk for e in mixed.values()]
    desk.post("/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "_selected_action": ids})
    event = mixed["failed"]
    page = desk.get(f"/admin/revenue/revenueevent/{event.pk}/change/").content.decode()
    link = re.search(r'href="(/admin/revenue/staffaction/\?[^"]*)">Staff actions<', page)
    assert link is not None
    listed = desk.get(link.group(1).replace("&amp;", "&")).content.decode()
    assert set(re.findall(r">revenue event (\d+)</a>", listed)) == {str(event.pk)}


def test_a_viewer_without_the_staff_action_permission_gets_no_link_to_them(client, mixed):
    viewer = StaffFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_revenueevent"))
    client.force_login(viewer)
    page = client.get(f"/admin/revenue/revenueevent/{mixed['failed'].pk}/change/").content.decode()
    assert "/admin/revenue/staffaction/" not in page


def test_the_worker_status_says_when_beat_stopped_sending_though_the_heartbeat_is_fresh(desk, db):
    # Trades start delivery runs of their own: with beat dead the heartbeat stayed fresh and
    # both pages read as healthy while nothing was retried or swept.
    DeliveryHeartbeat.objects.create(pk=1, last_run_at=timezone.now(), last_success_at=timezone.now(), connected=True)
    PeriodicTask.objects.update(last_run_at=timezone.now() - timedelta(minutes=25))
    for page in ("worker-status", "failure-report"):
        text = desk.get(f"/admin/revenue/revenueevent/{page}/").content.decode()
        assert 'id="banner-beat"' in text and 'id="banner-stalled"' not in text, page
    answer = desk.get("/api/admin/revenue/onchain-worker-status").json()
    assert answer["beat"]["status"] == "stalled" and answer["beat"]["last_sent_s"] >= 25 * 60
    PeriodicTask.objects.update(last_run_at=timezone.now())
    assert 'id="banner-beat"' not in desk.get("/admin/revenue/revenueevent/worker-status/").content.decode()
    assert desk.get("/api/admin/revenue/onchain-worker-status").json()["beat"]["status"] == "ok"
