"""Abandoning a delivery batch stuck in `submitted`: who may, what the database alone
refuses, the audit trail, the admin's page and the API's answers. What the chain must show
is tested against a real node: tests/revenue/test_delivery_anvil.py ("abandoning")."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from revenue.delivery.metadata import DeliveryMetadata, patch_submitted
from revenue.delivery.transitions import batch_abandon
from revenue.models import ChainDeployment, DeliveryBatch, RevenueEvent, StaffAction
from revenue.services import revenue_collect
from tests.conftest import jwt_client
from tests.factories import StaffFactory
from tests.revenue.chain.conftest import dead_uri  # noqa: F401  (fixture)
from tests.revenue.delivery_support import event_patch

pytestmark = pytest.mark.django_db


@pytest.fixture
def stuck(db) -> DeliveryBatch:
    """A batch in flight, not mined, holding one event, on an embedded deployment."""
    now = timezone.now()
    deployment = ChainDeployment.objects.create(
        chain_id=31337, contract_address="0x" + "1" * 40, signer_address="0x" + "2" * 40, deployed_at=now,
        embedded=True,
    )  # fmt: skip
    event = revenue_collect(stream=0, amount="5", description="x", source_type="t", source_id="stuck-1")
    batch = DeliveryBatch.objects.create(
        deployment=deployment, size=1, value_wei="1", nonce=7, gas=1, max_fee_per_gas=1, max_priority_fee_per_gas=1,
        submitted_at=now, item_ids=[event.pk], event_ids=[event.pk], tx_hashes=["0x" + "a" * 64],
    )  # fmt: skip
    event_patch(event.pk, patch_submitted(batch_id=batch.pk, tx_hash=batch.tx_hashes[0], nonce=7, now=now))
    return batch


def _event_status(batch: DeliveryBatch) -> str:
    return str(DeliveryMetadata.of(RevenueEvent.objects.get(pk=batch.event_ids[0]).metadata).status)


def _staff(*codenames: str):
    member = StaffFactory(is_superuser=False)
    member.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return member


def test_staff_without_the_permission_cannot_abandon_a_batch(client, stuck):
    # Staff who may view batches, even retry deliveries, may not give one up: 403 on the
    # admin's page and the API, no button, and nothing recorded or changed.
    member = _staff("view_deliverybatch", "retry_delivery", "view_revenueevent")
    client.force_login(member)
    page = client.get(f"/admin/revenue/deliverybatch/{stuck.pk}/change/")
    assert page.status_code == 200 and 'id="abandon-batch"' not in page.content.decode()
    assert client.get(f"/admin/revenue/deliverybatch/{stuck.pk}/abandon/").status_code == 403
    assert client.post(f"/admin/revenue/deliverybatch/{stuck.pk}/abandon/", {"reason": "x"}).status_code == 403
    api = jwt_client(member).post(f"/api/admin/revenue/batches/{stuck.pk}/abandon", {"reason": "x"}, format="json")
    assert api.status_code == 403 and api.json()["error"]["code"] == "permission_denied"
    assert jwt_client(StaffFactory(is_staff=False, is_superuser=False)).post(
        f"/api/admin/revenue/batches/{stuck.pk}/abandon", {"reason": "x"}, format="json"
    ).status_code == 403  # fmt: skip
    stuck.refresh_from_db()
    assert stuck.status == "submitted" and _event_status(stuck) == "submitted"
    assert not StaffAction.objects.exists()


def test_an_abandonment_needs_a_reason_and_an_existing_batch(stuck):
    client = jwt_client(_staff("abandon_batch"))
    blank = client.post(f"/api/admin/revenue/batches/{stuck.pk}/abandon", {"reason": "  "}, format="json")
    assert blank.status_code == 400 and "reason" in blank.json()["error"]["fields"]
    assert client.post(f"/api/admin/revenue/batches/{stuck.pk}/abandon", {}, format="json").status_code == 400
    # A member the endpoint has no field for is refused, not dropped, as on every body.
    misspelled = client.post(
        f"/api/admin/revenue/batches/{stuck.pk}/abandon", {"reason": "x", "force": True}, format="json"
    )
    assert misspelled.status_code == 400 and "force" in misspelled.json()["error"]["fields"]
    for missing in ("999999", "abc", "-1"):
        answer = client.post(f"/api/admin/revenue/batches/{missing}/abandon", {"reason": "x"}, format="json")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "delivery_batch_not_found"
    assert not StaffAction.objects.exists() and DeliveryBatch.objects.get().status == "submitted"


@pytest.mark.parametrize("state", ["confirmed", "mined", "embedded", "no_node"])
def test_what_the_database_alone_refuses_is_refused_and_recorded(stuck, state, settings):
    settings.WEB3_PROVIDER_URI = "" if state in ("embedded", "no_node") else "http://127.0.0.1:9"
    if state == "no_node":  # a node's deployment, but this process was given no node to ask
        ChainDeployment.objects.update(embedded=False)
    if state == "confirmed":
        DeliveryBatch.objects.filter(pk=stuck.pk).update(status="confirmed", block_number=5)
    elif state == "mined":  # mined, waiting for its confirmations
        DeliveryBatch.objects.filter(pk=stuck.pk).update(block_number=5)
    member = _staff("abandon_batch")
    answer = jwt_client(member).post(
        f"/api/admin/revenue/batches/{stuck.pk}/abandon", {"reason": "looks stuck"}, format="json"
    )
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "batch_not_abandonable"
    action = StaffAction.objects.get()
    assert (action.actor_username, action.action, action.outcome, action.reason) == (
        member.username, "batch_abandon", "refused", "looks stuck"
    )  # fmt: skip
    grounds = {"confirmed": "not_in_flight", "mined": "mined", "embedded": "embedded", "no_node": "no_node"}
    assert action.detail.split(":")[0] == grounds[state]
    assert DeliveryBatch.objects.get().status == ("confirmed" if state == "confirmed" else "submitted")


def test_a_node_that_does_not_answer_changes_nothing(stuck, settings, dead_uri):  # noqa: F811
    ChainDeployment.objects.update(embedded=False)
    settings.WEB3_PROVIDER_URI = dead_uri
    answer = jwt_client(_staff("abandon_batch")).post(
        f"/api/admin/revenue/batches/{stuck.pk}/abandon", {"reason": "node down"}, format="json"
    )
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "chain_unavailable"
    assert DeliveryBatch.objects.get().status == "submitted" and _event_status(stuck) == "submitted"
    assert StaffAction.objects.get().detail.startswith("chain_unavailable: ")


def test_a_batch_re_signed_since_it_was_checked_is_not_abandoned(stuck):
    assert batch_abandon(batch_id=stuck.pk, tx_hashes=["0x" + "b" * 64], error="x") is None
    assert DeliveryBatch.objects.get().status == "submitted" and _event_status(stuck) == "submitted"
    assert batch_abandon(batch_id=stuck.pk, tx_hashes=stuck.tx_hashes, error="gone") == 1
    assert DeliveryBatch.objects.get().status == "abandoned" and _event_status(stuck) == "pending"


def test_the_admin_page_asks_for_a_reason_and_shows_the_refusal(client, stuck, settings):
    # The permission to abandon alone: who may abandon a batch sees the batches.
    settings.WEB3_PROVIDER_URI = ""
    client.force_login(_staff("abandon_batch", "view_staffaction"))
    assert client.get("/admin/revenue/deliverybatch/").status_code == 200
    page = client.get(f"/admin/revenue/deliverybatch/{stuck.pk}/change/").content.decode()
    assert f'href="/admin/revenue/deliverybatch/{stuck.pk}/abandon/"' in page
    form = client.get(f"/admin/revenue/deliverybatch/{stuck.pk}/abandon/")
    assert form.status_code == 200 and 'name="reason"' in form.content.decode()
    again = client.post(f"/admin/revenue/deliverybatch/{stuck.pk}/abandon/", {"reason": " "})
    assert again.status_code == 200 and "Say why" in again.content.decode()
    refused = client.post(f"/admin/revenue/deliverybatch/{stuck.pk}/abandon/", {"reason": "demo"}, follow=True)
    assert "embedded chain" in refused.content.decode()
    assert DeliveryBatch.objects.get().status == "submitted"
    trail = client.get("/admin/revenue/staffaction/").content.decode()
    assert f'href="/admin/revenue/deliverybatch/{stuck.pk}/change/"' in trail and "demo" in trail


def test_a_reason_with_a_control_character_is_refused_not_a_server_error(client, stuck, settings):
    """The admin's form hands its text to the service as posted (no form field, whose
    validators refuse a NUL): the refusal's audit row then held a NUL, which PostgreSQL
    cannot store, and the page was a 500."""
    settings.WEB3_PROVIDER_URI = ""
    client.force_login(_staff("abandon_batch"))
    page = client.post(f"/admin/revenue/deliverybatch/{stuck.pk}/abandon/", {"reason": "stuck\x00 since noon"})
    assert page.status_code == 200 and "Text only: no control characters." in page.content.decode()
    assert not StaffAction.objects.exists() and DeliveryBatch.objects.get().status == "submitted"


def test_the_failure_report_links_the_stuck_batches(client, stuck):
    # "Batches stuck 1" said how many, not which: the operator had to find them by hand.
    DeliveryBatch.objects.filter(pk=stuck.pk).update(alerted_at=timezone.now())
    DeliveryBatch.objects.create(
        deployment=stuck.deployment, size=1, value_wei="1", nonce=8, gas=1, max_fee_per_gas=1,
        max_priority_fee_per_gas=1, submitted_at=timezone.now(), status="confirmed", block_number=3,
    )  # fmt: skip
    client.force_login(_staff("abandon_batch", "view_revenueevent"))
    page = client.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    link = "/admin/revenue/deliverybatch/?status__exact=submitted&amp;block_number__isnull=True"
    assert f'id="stuck-batches" href="{link}"' in page
    listing = client.get(link.replace("&amp;", "&"))
    assert listing.status_code == 200
    assert f"/admin/revenue/deliverybatch/{stuck.pk}/change/" in listing.content.decode()
    assert listing.content.decode().count("/change/") == 1
    client.force_login(_staff("view_revenueevent"))
    assert 'id="stuck-batches"' not in client.get("/admin/revenue/revenueevent/failure-report/").content.decode()
