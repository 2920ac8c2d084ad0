"""A staff retry may say why: the optional reason is recorded on every StaffAction row the
retry writes (API: `reason` in the JSON body; admin: the field beside the list's action and
beside each retry button). Abandoning a batch always took one; a retry recorded none."""

from __future__ import annotations

import html

import pytest
from django.utils import timezone

from core.errors import InvalidInput
from revenue.delivery.metadata import DeliveryMetadata, patch_delivered, patch_failed
from revenue.models import RevenueEvent, StaffAction
from revenue.services import revenue_collect
from revenue.staff_actions import revenue_events_delivery_retry
from tests.revenue.delivery_support import event_patch

pytestmark = pytest.mark.django_db


def _event(source: str, *patches) -> RevenueEvent:
    event = revenue_collect(stream=0, amount="5", description=source, source_type="t", source_id=source)
    event_patch(event.pk, *patches)
    return event


@pytest.fixture
def events(db):
    now = timezone.now()
    return {
        "failed": _event("r-fail", patch_failed(attempts=2, error="boom", now=now, next_retry_at=now)),
        "critical": _event("r-crit", patch_failed(attempts=5, error="boom", now=now, next_retry_at=None)),
        "delivered": _event(
            "r-done", patch_delivered(batch_id=1, tx_hash="0xabc", nonce=0, block_number=1, block_hash="0x1", now=now)
        ),
    }


@pytest.fixture
def desk(client, staff):
    client.force_login(staff)
    return client


def _status(event: RevenueEvent) -> str:
    return str(DeliveryMetadata.of(RevenueEvent.objects.get(pk=event.pk).metadata).status)


def _reasons() -> dict[int, str]:
    return dict(StaffAction.objects.values_list("target_id", "reason"))


# --- the service ----------------------------------------------------------------------------------


def test_the_reason_is_on_every_row_the_retry_writes_queued_or_skipped(staff, events):
    ids = [events["failed"].pk, events["delivered"].pk]
    outcome = revenue_events_delivery_retry(
        event_ids=ids, actor=staff, via="admin", reason="  node   was down\n since 02:00 "
    )
    assert outcome.queued == [events["failed"].pk] and list(outcome.skipped) == [events["delivered"].pk]
    assert _reasons() == dict.fromkeys(ids, "node was down since 02:00")


def test_no_reason_is_still_a_retry(staff, events):
    revenue_events_delivery_retry(event_ids=[events["failed"].pk], actor=staff, via="api")
    assert _reasons() == {events["failed"].pk: ""} and _status(events["failed"]) == "pending"


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        (" \t\n ", "A reason, when given, says something"),
        ("x" * 501, "At most 500 characters."),
        ("node\x07down", "Text only: no control characters."),
    ],
)
def test_a_reason_given_must_say_something_and_nothing_is_queued_otherwise(staff, events, reason, problem):
    with pytest.raises(InvalidInput) as refused:
        revenue_events_delivery_retry(event_ids=[events["critical"].pk], actor=staff, via="api", reason=reason)
    assert problem in refused.value.fields["reason"][0]
    assert not StaffAction.objects.exists() and _status(events["critical"]) == "critical"


# --- the staff API --------------------------------------------------------------------------------


def test_the_api_records_the_reason_given_in_the_body(staff_client, events):
    event = events["critical"]
    answer = staff_client.post(
        f"/api/admin/revenue/events/{event.pk}/retry", {"reason": "contract topped up"}, format="json"
    )
    assert answer.status_code == 202 and answer.json() == {"id": event.pk, "status": "queued"}
    action = StaffAction.objects.get()
    assert (action.via, action.reason, action.outcome) == ("api", "contract topped up", "done")


def test_the_api_without_a_body_answers_as_before(staff_client, events):
    answer = staff_client.post(f"/api/admin/revenue/events/{events['failed'].pk}/retry")
    assert answer.status_code == 202 and StaffAction.objects.get().reason == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "   "}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": "a\x1bb"}, "reason"),
        ({"reason": 5.5}, None),  # DRF reads a number as its text: recorded, not refused
        ({"reasons": "typo"}, "reasons"),  # a misspelt member is refused, not dropped
    ],
)
def test_the_api_refuses_a_reason_that_says_nothing(staff_client, events, body, field):
    event = events["critical"]
    answer = staff_client.post(f"/api/admin/revenue/events/{event.pk}/retry", body, format="json")
    if field is None:
        assert answer.status_code == 202 and StaffAction.objects.get().reason == "5.5"
        return
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["code"] == "validation_error" and field in error["fields"]
    assert not StaffAction.objects.exists() and _status(event) == "critical"


def test_the_schema_declares_the_optional_reason(staff_client):
    schema = staff_client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/admin/revenue/events/{event_id}/retry"]["post"]
    assert not operation["requestBody"].get("required", False)
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    body = schema["components"]["schemas"][ref]
    assert body["properties"]["reason"]["maxLength"] == 500 and body["properties"]["reason"]["minLength"] == 1
    assert body.get("required", []) == [] and body["additionalProperties"] is False
    assert "400" in operation["responses"] and "202" in operation["responses"]


# --- the admin ------------------------------------------------------------------------------------


def test_the_list_action_takes_a_reason_and_records_it(desk, events):
    listing = desk.get("/admin/revenue/revenueevent/").content.decode()
    assert 'name="reason"' in listing
    ids = [events["failed"].pk, events["critical"].pk]
    desk.post("/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "_selected_action": ids,
                                               "index": "0", "reason": "RPC provider outage over"})  # fmt: skip
    assert _reasons() == dict.fromkeys(ids, "RPC provider outage over")
    assert {_status(events["failed"]), _status(events["critical"])} == {"pending"}


def test_the_list_action_with_the_field_left_empty_records_no_reason(desk, events):
    desk.post("/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "index": "0",
                                               "_selected_action": [events["failed"].pk], "reason": ""})  # fmt: skip
    assert _reasons() == {events["failed"].pk: ""} and _status(events["failed"]) == "pending"


def test_the_list_action_refuses_a_blank_reason_and_queues_nothing(desk, events):
    response = desk.post("/admin/revenue/revenueevent/", {"action": "retry_delivery_now", "index": "0",
                         "_selected_action": [events["critical"].pk], "reason": "   "}, follow=True)  # fmt: skip
    page = html.unescape(response.content.decode())
    assert "Nothing was queued, the reason is refused: A reason, when given, says something" in page
    assert not StaffAction.objects.exists() and _status(events["critical"]) == "critical"


def test_the_event_page_and_the_report_have_a_reason_beside_their_retry_buttons(desk, events):
    event = events["critical"]
    page = desk.get(f"/admin/revenue/revenueevent/{event.pk}/change/").content.decode()
    assert 'id="retry-reason"' in page and 'name="reason"' in page
    report = desk.get("/admin/revenue/revenueevent/failure-report/").content.decode()
    assert f'aria-label="Reason for the retry of event {event.pk} (optional)"' in report
    desk.post(f"/admin/revenue/revenueevent/{event.pk}/retry/", {"reason": "gas price back to normal"})
    assert _reasons() == {event.pk: "gas price back to normal"} and _status(event) == "pending"
    listing = desk.get("/admin/revenue/staffaction/?q=gas+price").content.decode()
    assert "gas price back to normal" in listing


def test_the_retry_button_refuses_an_overlong_reason_and_comes_back(desk, events):
    event = events["failed"]
    response = desk.post(f"/admin/revenue/revenueevent/{event.pk}/retry/", {"reason": "x" * 501}, follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/revenue/revenueevent/{event.pk}/change/"
    assert "Nothing was queued, the reason is refused: At most 500 characters." in response.content.decode()
    assert not StaffAction.objects.exists() and _status(event) == "failed"
