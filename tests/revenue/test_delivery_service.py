"""The delivery cycle on the in-process chain (eth-tester): batching, sequences,
confirmations, failures and backoff, crashes, superseded deployments, one sender."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

import revenue.delivery.broadcast as broadcast
import revenue.delivery.service as service
from config.celery import app
from orders.models import Market
from revenue import dispatch, tasks
from revenue.chain.client import ChainUnavailable, TransientChainError
from revenue.chain.devnode import free_port
from revenue.chain.runtime import chain_context_get, chain_context_reset, embedded_block_mine
from revenue.delivery.lock import delivery_sender_lock
from revenue.delivery.metadata import DeliveryStatus, patch_failed
from revenue.delivery.service import revenue_event_delivery_retry, revenue_events_deliver, revenue_events_redrive
from revenue.dispatch import delivery_debounce_reset
from revenue.jsonb import JsonMerge
from revenue.models import ChainDeployment, DeliveryBatch, DeliveryHeartbeat, RevenueEvent, RevenueStream
from revenue.reports import onchain_failure_report
from revenue.services import revenue_collect
from revenue.tasks import revenue_delivery_redrive, revenue_delivery_run
from revenue.worker_status import delivery_status_counts, onchain_worker_status
from tests.revenue.delivery_support import (
    alerts,
    all_delivered,
    assert_delivered_exactly_once,
    assert_no_unpaid_delivered,
    distributed_total,
    drive,
    events_create,
    expected_wei,
    holder_total,
    in_thread,
    left_out_tied,
    metadata,
    onchain,
    statuses,
)

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """A worker dying mid-cycle: no except clause of the service sees it."""


@pytest.fixture
def dead_uri() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_a_batch_is_submitted_then_delivered_once_confirmed(embedded):
    ids = events_create(5)
    first = revenue_events_deliver(max_batches=5)
    assert first.ran and not first.error, first.as_dict()
    assert first.counters.batches_sent == 1 and first.counters.events_sent == 5
    batch = DeliveryBatch.objects.get()
    assert (batch.status, batch.size, batch.item_ids, batch.event_ids) == ("submitted", 5, ids, ids)
    assert batch.tx_hashes == [metadata(ids[0]).tx_hash]
    for pk in ids:
        data = metadata(pk)
        assert data.status == DeliveryStatus.SUBMITTED and data.batch_id == batch.pk
        assert data.nonce == batch.nonce and data.last_retry_at
        assert data.amount_wei == expected_wei([pk])[pk]
    # mined (the scan saw its logs), but one block is not CHAIN_CONFIRMATIONS=2: nothing distributed yet
    batch.refresh_from_db()
    assert batch.block_number is not None and batch.mined_tx_hash == batch.tx_hashes[0]
    assert distributed_total() == 0
    assert_no_unpaid_delivered()

    second = revenue_events_deliver(max_batches=5)  # mines one more block
    assert second.counters.events_confirmed == 5
    batch.refresh_from_db()
    assert batch.status == "confirmed" and batch.block_number and batch.mined_tx_hash == batch.tx_hashes[0]
    assert batch.finalized_at is not None  # the embedded chain's `finalized` block is its head
    assert_delivered_exactly_once()
    assert distributed_total() == holder_total() > 0


def test_events_are_batched_by_size_in_sequence_order(embedded, settings):
    settings.DELIVERY_BATCH_SIZE = 3
    ids = events_create(7)
    result = revenue_events_deliver(max_batches=5)
    assert result.counters.batches_sent == 3
    batches = list(DeliveryBatch.objects.order_by("pk"))
    assert [b.size for b in batches] == [3, 3, 1]
    assert [pk for b in batches for pk in b.event_ids] == ids
    assert [b.nonce for b in batches] == [batches[0].nonce + i for i in range(3)]
    drive(until=all_delivered)
    assert_delivered_exactly_once()


def test_max_batches_bounds_one_cycle(embedded, settings):
    settings.DELIVERY_BATCH_SIZE = 2
    events_create(7)
    assert revenue_events_deliver(max_batches=2).counters.batches_sent == 2
    counts = statuses()  # the second batch's block gives the first its second confirmation
    assert counts.pop("pending") == 3 and sum(counts.values()) == 4


def test_wei_is_rounded_down_and_zero_shares_are_delivered_when_there_is_no_dust_minimum(embedded, settings):
    settings.DELIVERY_MIN_ITEM_WEI = 0
    embedded.reference_price = Decimal("2999.99")
    embedded.save(update_fields=["reference_price"])
    tiny = revenue_collect(stream=0, amount="0.00000001", description="x", source_type="t", source_id="tiny")
    dollar = revenue_collect(stream=1, amount="1.00", description="x", source_type="t", source_id="dollar")
    assert tiny.holder_share == 0  # 15% of 1e-8 rounds down to zero at 8 decimal places
    assert dollar.holder_share == Decimal("0.15")
    drive(until=all_delivered)
    assert metadata(tiny.pk).amount_wei == 0
    # 0.15 USD / 2999.99 USD per ETH = 50,000,166,667,222.2... wei -> rounded down
    exact = Decimal("0.15") * 10**18 / Decimal("2999.99")
    assert int(exact) == 50_000_166_667_222 and exact != int(exact)
    assert metadata(dollar.pk).amount_wei == 50000166667222
    logs, total = onchain(chain_context_get())
    assert {log.item_id: log.amount for log in logs} == {tiny.pk: 0, dollar.pk: 50_000_166_667_222}
    assert total == 50_000_166_667_222
    assert distributed_total() == Decimal("0.15")


def test_an_unconvertible_currency_is_critical_at_once(embedded, django_capture_on_commit_callbacks):
    event = revenue_collect(stream=0, amount="5", description="x", source_type="t", source_id="btc", currency="BTC")
    with django_capture_on_commit_callbacks(execute=True):
        revenue_events_deliver(max_batches=1)
    data = metadata(event.pk)
    assert data.status == DeliveryStatus.CRITICAL and data.next_retry_at is None
    assert "no conversion" in (data.last_error or "")
    assert len(mail.outbox) == 1 and "gave up" in mail.outbox[0].subject
    counts = delivery_status_counts()
    assert counts["critical"] == 1 and counts["failed"] == 0 and sum(counts.values()) == RevenueEvent.objects.count()


def test_a_node_lost_while_building_pauses_delivery_and_uses_no_attempt(
    embedded, monkeypatch, django_capture_on_commit_callbacks
):
    ids = events_create(3)
    real_build = broadcast.build_delivery_tx

    def node_down(*args, **kwargs):
        raise ChainUnavailable("chain node unavailable: ConnectionError: refused")

    monkeypatch.setattr(broadcast, "build_delivery_tx", node_down)
    with django_capture_on_commit_callbacks(execute=True):
        result = revenue_events_deliver(max_batches=1)
    assert result.paused == "node_unreachable" and result.error_kind == "transient"
    with pytest.raises(TransientChainError):
        result.raise_for_transient()  # the run task is retried by Celery
    for pk in ids:
        data = metadata(pk)
        assert data.status == DeliveryStatus.PENDING and data.retry_attempts == 0 and data.last_error is None
    assert not DeliveryBatch.objects.exists()
    assert DeliveryHeartbeat.objects.get().pause_cause == "node_unreachable"
    assert alerts() == ["On-chain delivery paused: node_unreachable"]

    monkeypatch.setattr(broadcast, "build_delivery_tx", real_build)
    with django_capture_on_commit_callbacks(execute=True):
        drive(until=all_delivered)
    assert_delivered_exactly_once()
    assert DeliveryHeartbeat.objects.get().pause_cause == ""
    assert alerts()[-1] == "On-chain delivery resumed (node_unreachable is gone)"
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)


def test_backoff_doubles_until_the_event_is_critical_and_alerted_once(
    embedded, monkeypatch, clock, settings, django_capture_on_commit_callbacks
):
    import revenue.alerts as alerts

    settings.ALERT_WEBHOOK_URL = "http://alerts.invalid/hook"
    posted = []

    def post(url, json, timeout):
        posted.append((url, json))
        taken = alerts.requests.Response()
        taken.status_code = 200
        return taken

    monkeypatch.setattr(alerts.requests, "post", post)

    def reverts(*args, **kwargs):
        raise ValueError("execution reverted: bad stream")

    monkeypatch.setattr(broadcast, "build_delivery_tx", reverts)
    (pk,) = events_create(1)
    delays = []
    for attempt in range(1, 6):
        started = timezone.now()
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            revenue_events_deliver(max_batches=1)
        assert len(callbacks) == (1 if attempt == 5 else 0)  # the alert waits for the commit
        data = metadata(pk)
        assert data.retry_attempts == attempt
        assert data.status == (DeliveryStatus.CRITICAL if attempt == 5 else DeliveryStatus.FAILED)
        if attempt < 5:
            assert data.next_retry_at is not None
            delays.append(round((datetime.fromisoformat(data.next_retry_at) - started).total_seconds() / 60))
            clock.advance(minutes=delays[-1], seconds=1)
    assert delays == [2, 4, 8, 16]
    data = metadata(pk)
    assert data.next_retry_at is None and data.alerted_at
    assert len(mail.outbox) == 1 and "1 revenue event(s)" in mail.outbox[0].subject
    assert [body["event_ids"] for _, body in posted] == [[pk]]

    for _ in range(3):  # more cycles: no more attempts, no more alerts
        clock.advance(hours=1)
        with django_capture_on_commit_callbacks(execute=True):
            revenue_events_deliver(max_batches=1)
            revenue_events_redrive()
    assert metadata(pk).retry_attempts == 5 and metadata(pk).status == DeliveryStatus.CRITICAL
    assert len(mail.outbox) == 1 and len(posted) == 1

    # staff queue it again: a fresh budget, delivered once the chain accepts it
    monkeypatch.undo()
    assert revenue_event_delivery_retry(event_id=pk) is True
    drive(until=all_delivered)
    assert_delivered_exactly_once()
    assert metadata(pk).status == DeliveryStatus.DELIVERED


def test_worker_killed_after_persisting_before_broadcast_loses_nothing(embedded, monkeypatch):
    ids = events_create(4)
    real_send = broadcast.send_signed

    def killed(*args, **kwargs):
        raise WorkerKilled

    monkeypatch.setattr(broadcast, "send_signed", killed)
    with pytest.raises(WorkerKilled):
        revenue_events_deliver(max_batches=1)
    batch = DeliveryBatch.objects.get()
    assert batch.status == "submitted" and statuses() == {"submitted": 4}
    context = chain_context_get()
    assert context.w3.eth.get_transaction_count(context.signer.address) == batch.nonce  # never sent

    monkeypatch.setattr(broadcast, "send_signed", real_send)
    results = drive(until=all_delivered)
    assert sum(r.counters.rebroadcasts for r in results) == 1
    assert DeliveryBatch.objects.get().tx_hashes == batch.tx_hashes  # same bytes, same nonce
    assert_delivered_exactly_once()
    assert sorted(ids) == sorted(expected_wei())


def test_worker_killed_right_after_broadcast_doubles_nothing(embedded, monkeypatch):
    events_create(4)
    real_send = broadcast.send_signed

    def sent_then_killed(*args, **kwargs):
        real_send(*args, **kwargs)
        raise WorkerKilled

    monkeypatch.setattr(broadcast, "send_signed", sent_then_killed)
    with pytest.raises(WorkerKilled):
        revenue_events_deliver(max_batches=1)
    monkeypatch.setattr(broadcast, "send_signed", real_send)
    results = drive(until=all_delivered)
    assert sum(r.counters.rebroadcasts + r.counters.batches_sent for r in results) == 0
    assert DeliveryBatch.objects.count() == 1
    assert_delivered_exactly_once()


def test_a_new_embedded_chain_supersedes_the_old_deployment(embedded):
    events_create(3)
    revenue_events_deliver(max_batches=1)  # submitted on the first chain, not confirmed
    old = ChainDeployment.objects.get(active=True)
    old_batch = DeliveryBatch.objects.get()

    chain_context_reset()  # the worker process restarted: its in-process chain is gone
    drive(until=all_delivered)
    old.refresh_from_db()
    old_batch.refresh_from_db()
    assert not old.active and old.superseded_at is not None
    assert old_batch.status == "superseded"
    new = ChainDeployment.objects.get(active=True)
    assert new.contract_address != old.contract_address and new.embedded
    assert DeliveryBatch.objects.filter(deployment=new, status="confirmed").count() == 1
    assert_delivered_exactly_once()


def test_confirmed_batches_of_a_superseded_deployment_stay_delivered(embedded):
    events_create(2)
    drive(until=all_delivered)
    chain_context_reset()
    events_create(1, prefix="later")
    drive(until=all_delivered)
    assert DeliveryBatch.objects.filter(status="confirmed").count() == 2
    assert distributed_total() == holder_total()


def test_a_busy_sender_lock_returns_at_once(embedded, on_postgres):
    if on_postgres:
        pytest.skip("the PostgreSQL advisory lock is covered by test_one_sender_on_postgres")
    events_create(2)
    with delivery_sender_lock() as acquired:
        assert acquired
        result = revenue_events_deliver(max_batches=1)
    assert result.skipped == "busy" and not result.ran
    assert statuses() == {"pending": 2}


def test_no_price_pauses_delivery(embedded, django_capture_on_commit_callbacks):
    events_create(2)
    Market.objects.filter(pk=embedded.pk).update(symbol="ETH-USDC")  # no DELIVERY_PRICE_MARKET any more
    with django_capture_on_commit_callbacks(execute=True):
        result = revenue_events_deliver(max_batches=1)
    assert result.paused == "price_unavailable" and result.counters.batches_sent == 0
    assert statuses() == {"pending": 2} and alerts() == ["On-chain delivery paused: price_unavailable"]
    assert DeliveryHeartbeat.objects.get().pause_detail == "no ETH-USDT reference price to convert holder shares"
    Market.objects.filter(pk=embedded.pk).update(symbol="ETH-USDT")
    with django_capture_on_commit_callbacks(execute=True):
        drive(until=all_delivered)
    assert_delivered_exactly_once()
    assert alerts()[-1] == "On-chain delivery resumed (price_unavailable is gone)"


def test_disabled_delivery_does_nothing(embedded, settings):
    settings.DELIVERY_ENABLED = False
    events_create(1)
    assert revenue_events_deliver(max_batches=1).skipped == "disabled"
    assert not ChainDeployment.objects.exists() and statuses() == {"pending": 1}


def test_heartbeat_records_the_chain_and_the_last_error(embedded, settings, dead_uri):
    events_create(1)
    revenue_events_deliver(max_batches=1)
    beat = DeliveryHeartbeat.objects.get()
    context = chain_context_get()
    assert beat.connected and beat.chain_id == context.chain_id and beat.block_number >= 1
    assert beat.signer_address == context.signer_address and beat.contract_address == context.contract_address
    assert int(beat.signer_balance_wei) > 0 and beat.items_paid == 1
    assert beat.last_success_at == beat.last_run_at and beat.last_task == "run"

    settings.WEB3_PROVIDER_URI = dead_uri
    result = revenue_events_redrive()
    assert result.error_kind == "transient"
    beat.refresh_from_db()
    assert not beat.connected and beat.last_task == "redrive" and "unavailable" in beat.last_error.lower()
    assert beat.pause_cause == "node_unreachable"
    assert beat.last_error_at == beat.last_run_at > beat.last_success_at


def test_redrive_takes_due_failures_and_stale_pending_only(embedded, settings, clock):
    settings.DELIVERY_REDRIVE_BATCH = 2
    stale = events_create(3, prefix="stale")
    clock.advance(seconds=settings.DELIVERY_PENDING_STALE_SECONDS + 1)
    fresh = events_create(1, prefix="fresh")
    later = datetime(9999, 1, 1, tzinfo=UTC)
    RevenueEvent.objects.filter(pk=stale[2]).update(
        metadata=JsonMerge("metadata", patch_failed(attempts=1, error="x", now=timezone.now(), next_retry_at=later))
    )
    result = revenue_events_redrive()
    assert result.counters.events_sent == 2
    assert DeliveryBatch.objects.get().event_ids == stale[:2]  # oldest first, at most 2
    assert metadata(fresh[0]).status == DeliveryStatus.PENDING  # left to the run task
    assert metadata(stale[2]).status == DeliveryStatus.FAILED  # not due


def test_events_in_a_batch_in_flight_are_never_selected_again(embedded, settings, monkeypatch):
    settings.DELIVERY_RETRY_BASE_SECONDS = 0  # failed events are due at once
    ids = events_create(3)

    def down(*args, **kwargs):
        raise ChainUnavailable("chain node unavailable: timeout")

    real_send = broadcast.send_signed
    monkeypatch.setattr(broadcast, "send_signed", down)
    result = revenue_events_deliver(max_batches=1)  # persisted, broadcast failed: ambiguous
    assert result.paused == "node_unreachable" and statuses() == {"submitted": 3}
    assert revenue_events_deliver(max_batches=1).counters.batches_sent == 0  # the node may hold it
    monkeypatch.setattr(broadcast, "send_signed", real_send)
    drive(until=all_delivered)
    assert DeliveryBatch.objects.count() == 1  # rebroadcast, never a second batch for them
    assert_delivered_exactly_once()
    assert [metadata(pk).retry_attempts for pk in ids] == [0, 0, 0]


@pytest.mark.parametrize("size", [20, 200])
def test_a_cycle_does_a_bounded_number_of_queries(embedded, settings, django_assert_max_num_queries, size):
    settings.DELIVERY_BATCH_SIZE = size
    events_create(size)
    revenue_events_deliver(max_batches=1)  # deploys the chain, sends the first batch
    events_create(size, prefix="second")
    # confirms the first batch and sends the second: the same bound for 20 or 200 events
    # (the 10 `distributed` updates are one per stream; the held events' small index is read
    # once per batch, for those that fit again, and once per cycle, for those to alert)
    with django_assert_max_num_queries(57):
        result = revenue_events_deliver(max_batches=1)
    assert result.counters.events_confirmed == size and result.counters.events_sent == size
    with django_assert_max_num_queries(57):
        assert revenue_events_deliver(max_batches=1).counters.events_confirmed == size
    assert all_delivered()


def test_tasks_are_thin_and_retry_transient_errors(embedded, settings, dead_uri):
    events_create(2)
    assert revenue_delivery_run()["batches_sent"] == 1
    assert revenue_delivery_redrive()["events_confirmed"] == 2  # its block makes the 2nd confirmation
    settings.WEB3_PROVIDER_URI = dead_uri
    with pytest.raises(TransientChainError):
        revenue_delivery_run()
    assert revenue_delivery_redrive()["error_kind"] == "transient"
    assert revenue_delivery_run.acks_late and revenue_delivery_run.reject_on_worker_lost
    assert revenue_delivery_run.autoretry_for == (TransientChainError,)
    assert revenue_delivery_run.retry_backoff_max < 3600 and revenue_delivery_run.soft_time_limit


def test_delivery_tasks_are_routed_to_the_chain_queue():
    for name in ("revenue.tasks.revenue_delivery_run", "revenue.tasks.revenue_delivery_redrive"):
        assert app.amqp.router.route({}, name)["queue"].name == "chain"


def test_the_redrive_is_scheduled_every_minute():
    task = PeriodicTask.objects.get(task="revenue.tasks.revenue_delivery_redrive")
    assert task.enabled and task.queue == "chain"
    assert (task.interval.every, task.interval.period) == (60, "seconds")


def test_recording_events_publishes_one_debounced_run_after_commit(
    eth_market, monkeypatch, django_capture_on_commit_callbacks
):
    delivery_debounce_reset()
    published = []
    monkeypatch.setattr(app, "send_task", lambda name, **kwargs: published.append({"name": name, **kwargs}))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for i in range(5):
            revenue_collect(stream=0, amount="1", description="x", source_type="t", source_id=f"burst-{i}")
    assert callbacks and not published  # nothing before the commit
    for callback in callbacks:
        callback()
    assert len(published) == 1 and published[0]["countdown"] == 2
    assert published[0]["name"] == revenue_delivery_run.name  # the name a worker knows
    delivery_debounce_reset()


def test_staff_retry_leaves_events_in_flight_alone(embedded):
    (pk,) = events_create(1)
    revenue_events_deliver(max_batches=1)
    assert revenue_event_delivery_retry(event_id=pk) is False
    assert metadata(pk).status == DeliveryStatus.SUBMITTED


@pytest.mark.postgres
def test_one_sender_on_postgres(embedded):
    assert connection.vendor == "postgresql"
    events_create(2)
    holding = threading.Event()
    release = threading.Event()

    def other_sender() -> None:  # another worker: its own session holds the advisory lock
        with delivery_sender_lock() as acquired:
            assert acquired
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=in_thread, args=(other_sender,))
    thread.start()
    try:
        assert holding.wait(30)
        result = revenue_events_deliver(max_batches=1)
        assert result.skipped == "busy" and not result.ran and statuses() == {"pending": 2}
    finally:
        release.set()
        thread.join(30)
    assert revenue_events_deliver(max_batches=1).counters.batches_sent == 1


def test_tasks_published_by_name_exist_under_that_name():
    assert tasks.post_trade_jobs_run.name == dispatch.POST_TRADE_JOBS_RUN
    assert tasks.revenue_delivery_run.name == dispatch.REVENUE_DELIVERY_RUN


def test_distributed_is_exact_past_fifteen_significant_digits(embedded, settings):
    settings.DELIVERY_MIN_ITEM_WEI = 0  # the satoshi is paid, not carried as dust
    # SQL arithmetic on SQLite's money text is floating point: 10,000,000.00000001 would be
    # added as 10000000.0 (15 significant digits).
    event = revenue_collect(stream=2, amount="66666667", description="x", source_type="t", source_id="big")
    assert event.holder_share == Decimal("10000000.05")
    small = revenue_collect(stream=2, amount="0.00000007", description="x", source_type="t", source_id="sat")
    assert small.holder_share == Decimal("0.00000001")
    drive(until=all_delivered)
    stream = RevenueStream.objects.get(pk=2)
    assert stream.distributed == Decimal("10000000.05000001") == event.holder_share + small.holder_share


# --------------------------------------------------------------------------- shares the signer cannot pay


def _paid_once(context, event_ids: list[int]) -> None:
    """From the reserve's logs: these events were each paid exactly once, with their amount."""
    logs, _ = onchain(context)
    paid = [log.item_id for log in logs]
    assert sorted(paid) == sorted(set(paid)), "an item was paid twice"
    wanted = expected_wei(event_ids)
    assert {log.item_id: log.amount for log in logs if log.item_id in wanted} == wanted


def test_a_share_the_signer_cannot_pay_is_held_and_every_other_event_is_paid(
    embedded, clock, settings, django_capture_on_commit_callbacks
):
    """A 1e21-scale trade's holder share (7.5e34 wei) is more than the signer holds. Before,
    the node refused every batch carrying it ("does not have enough balance"), delivery
    paused with `insufficient_funds`, and nothing else was ever paid until the wallet held
    that absurd amount. Now it is held, visibly and alerted once; the others are paid."""
    before = events_create(3, prefix="a")
    huge = revenue_collect(stream=1, amount="1" + "0" * 21, description="x", source_type="t", source_id="huge").pk
    after = events_create(3, prefix="b")
    paid = before + after
    with django_capture_on_commit_callbacks(execute=True):
        results = drive(
            until=lambda: statuses() == {"delivered": 6, "pending": 1}, each=lambda r: assert_no_unpaid_delivered()
        )
    assert not any(r.paused for r in results) and results[0].counters.events_held == 1
    assert DeliveryHeartbeat.objects.get().pause_cause == ""
    _paid_once(chain_context_get(), paid)
    assert all(huge not in batch.event_ids for batch in DeliveryBatch.objects.all())
    data = metadata(huge)
    assert data.status == DeliveryStatus.PENDING and data.retry_attempts == 0
    assert data.held_cause == "insufficient_funds" and data.held_at and data.held_alerted_at
    assert "75000000000000000000000000000000000 wei" in (data.last_error or "")
    assert alerts() == ["On-chain delivery: 1 revenue event(s) held, the signer cannot pay their share"]
    # shown where failed deliveries are reviewed, from the moment it is held
    summary = onchain_failure_report(hours=24).summary
    assert summary["held_for_funds"] == 1 and summary["total_failures"] == 1 and summary["stale_pending"] == 0
    (stream,) = onchain_failure_report(hours=24).by_stream
    assert [(e["id"], e["status"], e["held_cause"]) for e in stream["events"]] == [
        (huge, "pending", "insufficient_funds")
    ]
    status = onchain_worker_status()
    assert status["held_for_funds"] == 1 and status["counts"]["pending"] == 1 and status["paused"] is None

    # later trades are paid too; the held event is not alerted again, whatever the time
    later = events_create(2, prefix="c")
    clock.advance(seconds=settings.DELIVERY_ALERT_REPEAT_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        drive(until=lambda: statuses() == {"delivered": 8, "pending": 1})
        revenue_events_redrive()
    _paid_once(chain_context_get(), paid + later)
    assert len(alerts()) == 1 and metadata(huge).held_cause == "insufficient_funds"
    clock.advance(minutes=30)
    assert onchain_failure_report(hours=24).summary["stale_pending"] == 0  # reported as held, not as stale


def test_a_held_share_is_paid_by_itself_once_the_balance_allows(embedded, django_capture_on_commit_callbacks):
    events_create(2, prefix="a")
    # 15% of 3e9 USDT at 2,000 USD/ETH: 2.25e23 wei, more than the embedded signer's 1e23
    big = revenue_collect(stream=2, amount="3000000000", description="x", source_type="t", source_id="big").pk
    with django_capture_on_commit_callbacks(execute=True):
        drive(until=lambda: statuses() == {"delivered": 2, "pending": 1})
    assert metadata(big).held_cause == "insufficient_funds"
    context = chain_context_get()
    funder = context.w3.eth.accounts[0]
    context.w3.eth.send_transaction({"from": funder, "to": context.signer_address, "value": 3 * 10**23})
    with django_capture_on_commit_callbacks(execute=True):
        results = drive(until=all_delivered, each=lambda r: assert_no_unpaid_delivered())
    assert sum(r.counters.events_released for r in results) == 1
    assert_delivered_exactly_once()
    data = metadata(big)
    assert data.held_at is None and data.held_cause is None and data.amount_wei == expected_wei([big])[big]
    assert onchain_failure_report(hours=24).summary["held_for_funds"] == 0
    assert alerts() == ["On-chain delivery: 1 revenue event(s) held, the signer cannot pay their share"]


def test_a_batch_refused_for_funds_all_the_same_is_sent_without_its_largest_item(embedded, monkeypatch):
    """The budget keeps a batch's usual gas; a node that wants more (a batch costing more
    gas than the last ones, a balance that moved) refuses it for funds: it is sent without
    its largest item, which the next batch carries. Before, delivery paused."""
    ids = events_create(6)
    amounts = expected_wei(ids)
    largest = max(ids, key=lambda pk: (amounts[pk], pk))
    real_build = broadcast.build_delivery_tx
    limit = sum(amounts.values()) - 1  # all of them are one wei too many

    def short(*args, **kwargs):
        if sum(item.amount_wei for item in kwargs["items"]) > limit:
            raise ValueError("insufficient funds for gas * price + value: have 1 want 2")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(broadcast, "build_delivery_tx", short)
    first = revenue_events_deliver(max_batches=1)
    assert not first.paused and first.counters.batches_sent == 1, first.as_dict()
    assert DeliveryBatch.objects.get().event_ids == [pk for pk in ids if pk != largest]
    assert metadata(largest).status == DeliveryStatus.PENDING and metadata(largest).held_at is None
    drive(until=all_delivered)
    assert_delivered_exactly_once()
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)


def test_the_in_process_chain_unable_to_cover_the_gas_pauses_and_uses_no_attempt(
    embedded, django_capture_on_commit_callbacks
):
    """The in-process chain (py-evm) refuses a transaction whose gas alone the sender cannot
    cover in its own words, "cannot afford txn gas" (its estimate asks for the block's whole
    gas limit: below about 0.03 ETH every batch). That was taken for the batch's own fault:
    each event used an attempt, every cycle, until all were critical. It is the signer's
    funds: delivery pauses (`insufficient_funds`), no attempt used, and resumes once funded."""
    from revenue.chain.client import send_signed, sign_tx
    from revenue.delivery.health import chain_view_read, fees_capped

    ids = events_create(3)
    context = chain_context_get()
    w3 = context.w3
    max_fee, priority = fees_capped(chain_view_read(context))
    keep = 10**16  # 0.01 ETH: a batch's gas and these shares, not the block's gas limit
    drain = {
        "type": 2, "chainId": context.chain_id, "to": w3.eth.accounts[0], "gas": 21_000, "data": "0x",
        "nonce": w3.eth.get_transaction_count(context.signer_address), "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": priority,
        "value": w3.eth.get_balance(context.signer_address) - keep - 21_000 * max_fee,
    }  # fmt: skip
    send_signed(w3, sign_tx(context.signer, drain))
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            result = revenue_events_deliver(max_batches=1)
        assert result.paused == "insufficient_funds" and result.counters.events_failed == 0, result.as_dict()
    assert statuses() == {"pending": 3} and all(metadata(pk).retry_attempts == 0 for pk in ids)
    assert sorted(alerts()) == [
        "On-chain delivery paused: insufficient_funds",
        "On-chain delivery: the signer's balance is low",
    ]

    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": context.signer_address, "value": 10**18})
    with django_capture_on_commit_callbacks(execute=True):
        drive(until=all_delivered)
    assert_delivered_exactly_once()
    assert alerts()[-1] == "On-chain delivery resumed (insufficient_funds is gone)"


def test_failed_events_past_a_lowered_attempt_limit_become_critical_and_are_alerted_once(
    embedded, settings, django_capture_on_commit_callbacks
):
    """DELIVERY_MAX_ATTEMPTS lowered (5 to 3) while events had failed 3 or 4 times: they
    were never selected again (attempts not below the limit) nor made critical (that took one
    more failed attempt): `failed` for ever, a next retry shown in the past, no alert. The
    re-drive gives them up as their attempts say: critical, alerted once."""
    exhausted = events_create(2, prefix="x")
    (due,) = events_create(1, prefix="y")
    past = timezone.now()
    for pk, attempts in ((exhausted[0], 3), (exhausted[1], 4), (due, 2)):
        RevenueEvent.objects.filter(pk=pk).update(
            metadata=JsonMerge(
                "metadata", patch_failed(attempts=attempts, error="reverted", now=past, next_retry_at=past)
            )
        )
    settings.DELIVERY_MAX_ATTEMPTS = 3
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            revenue_events_redrive()
    for pk, attempts in ((exhausted[0], 3), (exhausted[1], 4)):
        data = metadata(pk)
        assert (data.status, data.retry_attempts, data.next_retry_at) == (DeliveryStatus.CRITICAL, attempts, None)
    assert metadata(due).status in (DeliveryStatus.SUBMITTED, DeliveryStatus.DELIVERED)  # retried as usual
    assert alerts() == ["2 revenue event(s): on-chain delivery gave up"]
    assert delivery_status_counts()["critical"] == 2


# --------------------------------------------------------------------------- refused for funds once signed


def _tx_cost(signed) -> tuple[int, int]:
    """What the node checks a transaction against the balance for: (value, gas x max fee)."""
    from eth_account.typed_transactions import TypedTransaction
    from hexbytes import HexBytes

    tx = TypedTransaction.from_bytes(HexBytes(signed.raw_transaction)).as_dict()
    return int(tx["value"]), int(tx["gas"]) * int(tx["maxFeePerGas"])


def _node_short_of_funds(monkeypatch, *, can_pay: Callable[[int, int], bool]) -> list[tuple[int, int]]:
    """The node refuses, in the in-process chain's own words, every transaction whose value
    and gas the signer cannot pay (``can_pay(value, gas cost)``: the balance moved after the
    batch was planned). Returns what it was asked to take."""
    real_send = broadcast.send_signed
    asked: list[tuple[int, int]] = []

    def send(w3, signed):
        value, gas_cost = _tx_cost(signed)
        asked.append((value, gas_cost))
        if not can_pay(value, gas_cost):
            raise ValueError(
                "Sender does not have enough balance to cover transaction value and gas "
                f"(has 1, needs {value + gas_cost})"
            )
        return real_send(w3, signed)

    monkeypatch.setattr(broadcast, "send_signed", send)
    return asked


def test_a_saved_batch_refused_for_funds_at_broadcast_is_re_signed_smaller_at_its_nonce(embedded, monkeypatch):
    """A batch planned within the balance, signed and saved, then refused for funds when it
    is sent (the operator withdrew from the signer in between). Before, delivery paused
    (`insufficient_funds`) and every later cycle's rebroadcast of the same bytes was refused
    the same way while the signer could pay a smaller batch. Now it is re-signed at its nonce
    without what the balance cannot pay; the item left out stays with that nonce until the
    version mined is known (confirmed), then is paid once by a later batch."""
    ids = events_create(6)
    amounts = expected_wei(ids)
    largest = max(ids, key=lambda pk: (amounts[pk], pk))
    limit = sum(amounts.values()) - 1  # the balance now pays all of them but one wei
    asked = _node_short_of_funds(monkeypatch, can_pay=lambda value, gas: value <= limit)

    first = revenue_events_deliver(max_batches=1)
    assert not first.paused and first.counters.batches_sent == 1 and first.counters.events_failed == 0, first.as_dict()
    batch = DeliveryBatch.objects.get()
    assert len(batch.tx_hashes) == 2 and len(asked) == 2 and asked[0][0] == sum(amounts.values())
    assert batch.event_ids == [pk for pk in ids if pk != largest] and batch.left_out_item_ids == [largest]
    assert batch.mined_tx_hash == batch.tx_hashes[1]  # the smaller version, at the same nonce
    assert metadata(largest).batch_id == batch.pk and metadata(largest).status == DeliveryStatus.SUBMITTED
    results = drive(until=all_delivered, each=left_out_tied(batch.pk, [largest]))
    assert not any(r.paused for r in results)
    assert_delivered_exactly_once()
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)
    batch.refresh_from_db()
    assert batch.status == "confirmed" and batch.left_out_item_ids == [] and largest not in batch.event_ids
    assert DeliveryHeartbeat.objects.get().pause_cause == ""


def test_a_fee_bump_the_balance_cannot_pay_is_a_smaller_replacement_at_the_same_nonce(embedded, monkeypatch, settings):
    """A batch whose value is nearly the whole budget waits in the pool and must be replaced
    with fees +12.5%: its value and the higher gas are more than the balance. Before, the
    replacement was refused for funds and delivery paused (`insufficient_funds`). Now the
    replacement at the same nonce carries what the balance pays at the higher fee; the
    items left out stay with that nonce until the version mined is known."""
    context = chain_context_get()
    tester = context.w3.provider.ethereum_tester
    ids = events_create(6)
    amounts = expected_wei(ids)
    tester.disable_auto_mine_transactions()  # the batch waits in the pool
    try:
        first = revenue_events_deliver(max_batches=1)
        assert first.counters.batches_sent == 1, first.as_dict()
        batch = DeliveryBatch.objects.get()
        value, gas_cost = sum(amounts.values()), batch.gas * batch.max_fee_per_gas
        # the balance pays the batch as sent, not with its gas 12.5% dearer
        asked = _node_short_of_funds(monkeypatch, can_pay=lambda v, g: v + g <= value + gas_cost)
        settings.DELIVERY_STUCK_SECONDS = 0
        DeliveryBatch.objects.filter(pk=batch.pk).update(broadcast_block=batch.broadcast_block - 1)  # passed over
        monkeypatch.setattr(service, "embedded_block_mine", lambda context: None)  # no block takes it meanwhile
        second = revenue_events_deliver(max_batches=1)
        monkeypatch.setattr(service, "embedded_block_mine", embedded_block_mine)
        assert not second.paused and second.counters.events_failed == 0, second.as_dict()
        assert second.counters.replacements == 1
        replaced = DeliveryBatch.objects.get()
        assert replaced.nonce == batch.nonce and replaced.max_fee_per_gas * 1000 >= batch.max_fee_per_gas * 1125
        assert asked[-1][0] + asked[-1][1] <= value + gas_cost and asked[-1][0] < value
        left_out = [pk for pk in ids if pk not in replaced.event_ids]
        assert left_out and replaced.left_out_item_ids == left_out
        assert all(metadata(pk).batch_id == batch.pk for pk in left_out)
        assert all(metadata(pk).status == DeliveryStatus.SUBMITTED for pk in ids)
    finally:
        tester.enable_auto_mine_transactions()
    results = drive(until=all_delivered, each=left_out_tied(batch.pk, left_out))
    assert not any(r.paused for r in results)
    replaced.refresh_from_db()
    assert replaced.mined_tx_hash == replaced.tx_hashes[-1] and replaced.left_out_item_ids == []
    assert_delivered_exactly_once()
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)
