"""Delivery against a real node (the project-local anvil): volume, and the faults of a bad
day on a real chain, each checked from the reserve's own logs (every event paid exactly
once, nothing `delivered` that the canonical chain did not pay) and from what the failure
report, the worker status and the alerts said meanwhile."""

from __future__ import annotations

import io
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from hexbytes import HexBytes

import revenue.delivery.broadcast as broadcast
import revenue.delivery.health as health
from orders.engine.requests import OrderRequest
from orders.models import Market
from orders.services.orders import order_place
from revenue.chain.client import (
    ChainUnavailable,
    DeliveryItem,
    SignedTx,
    build_delivery_tx,
    build_self_transfer_tx,
    connect,
    dev_signer_fund,
    receipt_or_none,
    send_signed,
    sign_tx,
    suggest_fees,
    wait_for_receipt,
)
from revenue.chain.devnode import AnvilRPC
from revenue.chain.runtime import ChainContext, chain_context_get, chain_context_reset
from revenue.delivery.health import chain_view_read, fees_capped
from revenue.delivery.metadata import DeliveryStatus
from revenue.delivery.service import DeliveryCycleResult, revenue_events_deliver
from revenue.errors import DeliveryBatchNotAbandonable
from revenue.models import (
    ChainDeployment,
    DeliveryBatch,
    DeliveryBundle,
    DeliveryHeartbeat,
    RevenueEvent,
    RevenueStream,
    StaffAction,
)
from revenue.reports import onchain_failure_report
from revenue.services import revenue_collect
from revenue.staff_actions import AbandonOutcome, delivery_batch_abandon
from revenue.worker_status import onchain_worker_status
from tests.factories import StaffFactory, fund
from tests.revenue import delivery_support
from tests.revenue.chain.conftest import (  # noqa: F401  (fixtures)
    anvil,
    anvil_ctl,
    anvil_factory,
    anvil_node,
    reserve_owner_call,
)
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
    left_out_tied,
    metadata,
    onchain,
    payments_by_event,
    statuses,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.anvil, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def cycles_commit(monkeypatch, django_capture_on_commit_callbacks):
    """Each delivery cycle runs what waits for its commits (the alerts) when it ends, as the
    worker's real commits would: the test's own transaction never commits."""
    real = delivery_support.revenue_events_deliver

    def cycle(**kwargs: Any) -> DeliveryCycleResult:
        with django_capture_on_commit_callbacks(execute=True):
            return real(**kwargs)

    monkeypatch.setattr(delivery_support, "revenue_events_deliver", cycle)
    monkeypatch.setitem(globals(), "revenue_events_deliver", cycle)


class WorkerKilled(BaseException):
    """A worker dying mid-cycle: no except clause of the service sees it."""


@dataclass
class Node:
    ctl: AnvilRPC
    context: ChainContext

    def mine(self) -> None:
        self.ctl.mine(1)


def deploy(settings, uri: str, key_file: Path) -> ChainContext:
    settings.WEB3_PROVIDER_URI = uri
    settings.CHAIN_SIGNER_PRIVATE_KEY = ""
    settings.CHAIN_SIGNER_KEY_FILE = key_file
    settings.CHAIN_CONFIRMATIONS = 2
    chain_context_reset()
    call_command("chain_deploy", "--dev", stdout=io.StringIO())
    return chain_context_get()


@pytest.fixture
def on_anvil(settings, anvil, anvil_ctl, eth_market, tmp_path) -> Iterator[Node]:  # noqa: F811
    """The platform on the session anvil (its chain reverted after the test), deployed
    with `manage.py chain_deploy --dev`."""
    yield Node(ctl=anvil_ctl, context=deploy(settings, anvil, tmp_path / "chain-signer.key"))
    chain_context_reset()


def sound(result: DeliveryCycleResult | None = None) -> None:
    """What must hold after every cycle, whatever the fault: nothing delivered that the
    canonical chain did not pay, and the statuses add up to the events."""
    assert_no_unpaid_delivered()
    counts = onchain_worker_status()["counts"]
    assert sum(counts.values()) == RevenueEvent.objects.count(), counts


def one_batch_pending(node: Node, settings: Any, *, events: int) -> tuple[list[int], DeliveryBatch]:
    """``events`` events sent in one batch that waits in the node's pool (no automine; not
    replaced for being slow)."""
    settings.DELIVERY_STUCK_SECONDS = 3600
    ids = events_create(events)
    node.ctl.set_automine(False)
    revenue_events_deliver(max_batches=1)
    return ids, DeliveryBatch.objects.get()


def report() -> dict[str, Any]:
    return onchain_failure_report(hours=24).summary


def signed_by_the_platform_key(
    context: ChainContext, event_ids: list[int], *, nonce: int, fees: tuple[int, int] | None = None
) -> SignedTx:
    """A delivery of these events signed with the platform's key by someone else (another
    instance, a leaked key): the platform never recorded it."""
    w3 = context.w3
    amounts = expected_wei(event_ids)
    streams = dict(RevenueEvent.objects.filter(pk__in=event_ids).values_list("pk", "stream_id"))
    items = [DeliveryItem(item_id=pk, stream_id=streams[pk], amount_wei=amounts[pk]) for pk in event_ids]
    max_fee, priority = fees or suggest_fees(w3)
    tx = build_delivery_tx(
        w3,
        contract_address=context.contract_address,
        signer_address=context.signer_address,
        items=items,
        nonce=nonce,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        gas=1_000_000,
    )
    return sign_tx(context.signer, tx)


def owner_call(context: ChainContext, owner: Any, function: str, *args: Any, tip: int = 0) -> str:
    """An owner transaction on the reserve (signer management, pause); not waited for."""
    return reserve_owner_call(context.w3, context.contract_address, owner, function, *args, tip=tip)


# --------------------------------------------------------------------------- volume


def test_a_thousand_events_are_delivered_exactly_once(on_anvil, settings, capsys):
    settings.DELIVERY_BATCH_SIZE = 200
    events_create(1000)
    started = time.monotonic()
    results = drive(until=all_delivered, mine=on_anvil.mine, max_batches=5, each=sound)
    elapsed = time.monotonic() - started
    assert_delivered_exactly_once(on_anvil.context)
    batches = list(DeliveryBatch.objects.order_by("pk"))
    assert [(b.size, b.status) for b in batches] == [(200, "confirmed")] * 5
    assert sum(r.counters.batches_sent for r in results) == 5
    assert distributed_total() == holder_total()
    with capsys.disabled():
        print(f"\n[delivery] 1,000 events on anvil: {len(results)} cycles, 5 batches, {elapsed:.2f} s")


def test_confirmed_batches_are_rechecked_until_final(on_anvil):
    events_create(5)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    batch = DeliveryBatch.objects.get()
    assert batch.status == "confirmed" and batch.finalized_at is None  # anvil's `finalized`: 64 blocks deep
    on_anvil.ctl.mine(64)
    assert revenue_events_deliver(max_batches=1).counters.batches_finalized == 1
    batch.refresh_from_db()
    assert batch.finalized_at is not None
    assert onchain_worker_status()["chain"]["finalized_block"] >= batch.block_number


# --------------------------------------------------------------------------- double payment


def test_a_same_key_transaction_over_a_batch_in_flight_with_a_newer_batch_out(on_anvil, settings):
    """Another sender with the platform's key replaces the newer batch in the pool: its
    transaction pays events of that batch and a pending one, and finds one paid already."""
    settings.DELIVERY_BATCH_SIZE = 10
    settings.DELIVERY_STUCK_SECONDS = 3600
    ids = events_create(30)
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.set_automine(False)
    revenue_events_deliver(max_batches=1)  # batch A: events 1-10
    first = DeliveryBatch.objects.get()
    ctl.mine(1)  # A mined, 1 confirmation: it does not hold the next batch back
    revenue_events_deliver(max_batches=1)  # batch B: events 11-20
    newer = DeliveryBatch.objects.exclude(pk=first.pk).get()
    assert newer.event_ids == ids[10:20] and receipt_or_none(context.w3, newer.tx_hashes[0]) is None
    sound()

    taken = [ids[14], ids[15], ids[16], ids[24], ids[4]]  # 3 of B, 1 pending, 1 paid by A
    fees = (newer.max_fee_per_gas * 2, newer.max_priority_fee_per_gas * 2)
    foreign = signed_by_the_platform_key(context, taken, nonce=newer.nonce, fees=fees)
    send_signed(context.w3, foreign)  # replaces B in the pool: same nonce, higher fees
    ctl.evm_mine()
    assert receipt_or_none(context.w3, foreign.tx_hash)["status"] == 1  # type: ignore[index]

    ctl.set_automine(True)
    results = drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)
    adopted = DeliveryBatch.objects.get(foreign=True)
    assert adopted.tx_hashes == [foreign.tx_hash] and sorted(adopted.event_ids) == sorted(taken[:4])
    for pk in taken[:4]:
        assert metadata(pk).tx_hash == foreign.tx_hash
    first.refresh_from_db()
    assert metadata(ids[4]).tx_hash == first.mined_tx_hash == first.tx_hashes[0]  # A paid it; the other was refunded
    newer.refresh_from_db()
    assert newer.status == "confirmed" and newer.nonce != fees and len(newer.tx_hashes) == 2  # rebuilt
    assert sorted(newer.event_ids) == sorted(set(ids[10:20]) - set(taken))
    assert sum(r.counters.adopted_batches for r in results) == 1
    assert sum(r.counters.rebuilds for r in results) == 1
    assert report()["total_failures"] == 0
    assert alerts() == ["A transaction this platform did not send paid 4 revenue item(s)"]


def test_a_reorg_replacing_a_confirmed_batch_by_another_same_nonce_transaction(on_anvil, settings):
    settings.DELIVERY_BATCH_SIZE = 10
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.mine(5)  # keep the reorg away from the contract's own deployment
    ids = events_create(10)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    confirmed = DeliveryBatch.objects.get()
    others = events_create(10, prefix="later")
    ctl.mine(1)
    # The replacing chain holds, at the confirmed batch's nonce, another transaction of the
    # platform's key paying the other events: the batch's events were never paid there.
    rival = signed_by_the_platform_key(context, others, nonce=confirmed.nonce)
    depth = context.w3.eth.block_number - confirmed.block_number + 1
    assert depth > settings.CHAIN_CONFIRMATIONS
    ctl.reorg(depth, [(HexBytes(rival.raw_transaction).to_0x_hex(), 0)])
    assert receipt_or_none(context.w3, confirmed.mined_tx_hash) is None
    assert receipt_or_none(context.w3, rival.tx_hash)["status"] == 1  # type: ignore[index]

    result = revenue_events_deliver(max_batches=1)
    sound()
    assert result.counters.reorgs_detected == 1 and result.counters.reorged_batches == 1
    assert result.counters.adopted_batches == 1
    assert all(metadata(pk).status != DeliveryStatus.DELIVERED for pk in ids)  # taken back at once
    assert all(metadata(pk).reorged_at for pk in ids)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)
    confirmed.refresh_from_db()
    assert confirmed.status == "confirmed" and confirmed.mined_tx_hash != confirmed.tx_hashes[0]  # rebuilt
    assert all(metadata(pk).tx_hash == confirmed.mined_tx_hash for pk in ids)
    assert all(metadata(pk).tx_hash == rival.tx_hash for pk in others)
    assert distributed_total() == holder_total()


@pytest.mark.parametrize("how", ["rollback", "reorg"])
def test_a_reorg_deeper_than_the_confirmations_still_delivers_once(on_anvil, settings, how):
    ids = events_create(10)
    ctl, w3 = on_anvil.ctl, on_anvil.context.w3
    ctl.mine(5)  # keep the reorg away from the contract's own deployment
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    batch = DeliveryBatch.objects.get(status="confirmed")
    assert distributed_total() == holder_total()
    ctl.mine(1)
    depth = w3.eth.block_number - batch.block_number + 1  # its block and every block on top
    assert depth == 3 > settings.CHAIN_CONFIRMATIONS
    if how == "rollback":
        ctl.rollback(depth)
    else:
        ctl.reorg(depth)
    assert receipt_or_none(w3, batch.mined_tx_hash) is None

    result = revenue_events_deliver(max_batches=5)
    sound()
    assert result.counters.reorged_batches == 1
    assert DeliveryStatus.DELIVERED not in statuses()
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    batch.refresh_from_db()
    assert batch.status == "confirmed" and DeliveryBatch.objects.count() == 1
    assert all(metadata(pk).reorged_at for pk in ids)
    assert_delivered_exactly_once(on_anvil.context)


# --------------------------------------------------------------------------- transaction manager


def test_a_dropped_transaction_is_rebroadcast_at_the_same_nonce(on_anvil, settings):
    ids, batch = one_batch_pending(on_anvil, settings, events=5)
    ctl = on_anvil.ctl
    (tx_hash,) = batch.tx_hashes
    assert tx_hash in ctl.pending_hashes()
    ctl.drop_transaction(tx_hash)
    ctl.mine(1)
    assert tx_hash not in ctl.pending_hashes() and receipt_or_none(on_anvil.context.w3, tx_hash) is None

    result = revenue_events_deliver(max_batches=5)
    assert result.counters.rebroadcasts == 1 and result.counters.batches_sent == 0
    assert tx_hash in ctl.pending_hashes()
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    batch.refresh_from_db()
    assert batch.tx_hashes == [tx_hash] and batch.mined_tx_hash == tx_hash
    assert all(metadata(pk).tx_hash == tx_hash for pk in ids)
    assert_delivered_exactly_once(on_anvil.context)


def test_a_dropped_and_underpriced_transaction_is_re_signed_with_higher_fees(on_anvil, settings, clock):
    settings.DELIVERY_SUBMITTED_ALERT_SECONDS = 600
    ids, batch = one_batch_pending(on_anvil, settings, events=4)
    ctl, w3 = on_anvil.ctl, on_anvil.context.w3
    (first,) = batch.tx_hashes
    ctl.drop_transaction(first)
    ctl.set_next_block_base_fee(batch.max_fee_per_gas * 3)  # its bytes can no longer enter a block
    ctl.mine(1)
    assert receipt_or_none(w3, first) is None
    with pytest.raises(Exception, match="base fee"):
        send_signed(w3, SignedTx(bytes(HexBytes(batch.signed_raw_tx)), first))  # what a blind rebroadcast gets

    clock.advance(seconds=601)  # and it has not been mined for long
    result = revenue_events_deliver(max_batches=1)
    sound()
    assert result.counters.replacements == 1 and result.counters.rebroadcasts == 0
    replaced = DeliveryBatch.objects.get()
    assert replaced.nonce == batch.nonce and replaced.tx_hashes[0] == first and len(replaced.tx_hashes) == 2
    assert replaced.max_fee_per_gas > batch.max_fee_per_gas * 3
    assert replaced.tx_hashes[1] in ctl.pending_hashes()
    assert report()["batches_stuck"] == 1 and onchain_worker_status()["batches_stuck"] == 1
    assert alerts() == [f"On-chain delivery: batch {batch.pk} not mined after 601 s"]

    ctl.evm_mine()
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    replaced.refresh_from_db()
    assert replaced.mined_tx_hash == replaced.tx_hashes[1]
    assert all(metadata(pk).tx_hash == replaced.tx_hashes[1] for pk in ids)
    assert_delivered_exactly_once(on_anvil.context)
    assert len(alerts()) == 1  # one alert per stuck batch


@pytest.mark.parametrize("why", ["underpriced", "stuck"])
def test_a_pending_transaction_is_replaced_at_the_same_nonce_with_higher_fees(on_anvil, settings, why):
    ids, batch = one_batch_pending(on_anvil, settings, events=3)
    ctl, w3 = on_anvil.ctl, on_anvil.context.w3
    (first,) = batch.tx_hashes
    if why == "underpriced":
        ctl.set_next_block_base_fee(batch.max_fee_per_gas * 3)  # it can no longer be included
    else:
        # A block is made without it (too big for that block alone): it has been passed
        # over, and pending "too long".
        limit = int(w3.eth.get_block("latest")["gasLimit"])
        ctl.rpc("evm_setBlockGasLimit", hex(batch.gas - 1))
        ctl.evm_mine()
        ctl.rpc("evm_setBlockGasLimit", hex(limit))
        assert receipt_or_none(w3, first) is None and first in ctl.pending_hashes()
        settings.DELIVERY_STUCK_SECONDS = 0

    result = revenue_events_deliver(max_batches=5)
    assert result.counters.replacements == 1
    replaced = DeliveryBatch.objects.get()
    assert replaced.tx_hashes[0] == first and len(replaced.tx_hashes) == 2
    second = replaced.tx_hashes[1]
    assert replaced.nonce == batch.nonce
    assert replaced.max_fee_per_gas * 1000 >= batch.max_fee_per_gas * 1125
    assert replaced.max_priority_fee_per_gas * 1000 >= batch.max_priority_fee_per_gas * 1125
    if why == "underpriced":
        assert replaced.max_fee_per_gas > batch.max_fee_per_gas * 3
    pending = ctl.pending_hashes()
    assert second in pending and first not in pending
    assert w3.eth.get_transaction(second)["nonce"] == batch.nonce

    ctl.evm_mine()
    settings.DELIVERY_STUCK_SECONDS = 3600
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    replaced.refresh_from_db()
    assert replaced.mined_tx_hash == second and receipt_or_none(w3, first) is None
    assert all(metadata(pk).tx_hash == second for pk in ids)
    assert_delivered_exactly_once(on_anvil.context)


def test_a_stalled_head_does_not_bump_fees_and_is_alerted(on_anvil, settings, clock):
    """The node answers but makes no block (a stalled or lagging head): a pending batch was
    re-signed every DELIVERY_STUCK_SECONDS with fees +12.5% each time (47 versions in 40
    minutes, the tip from 1 to 225 gwei), and paid some 500 times the base fee once blocks
    came again. Nothing passed it over: it now waits at its fees, and the stall is alerted."""
    _, batch = one_batch_pending(on_anvil, settings, events=3)
    settings.DELIVERY_STUCK_SECONDS = 30
    ctl, w3 = on_anvil.ctl, on_anvil.context.w3
    head = w3.eth.block_number
    for _ in range(25):  # 13 minutes of cycles, no block made
        clock.advance(seconds=31)
        result = revenue_events_deliver(max_batches=1)
        assert result.counters.replacements == 0 and not result.paused
        sound()
    assert w3.eth.block_number == head
    stalled = DeliveryBatch.objects.get()
    assert stalled.tx_hashes == batch.tx_hashes and stalled.max_priority_fee_per_gas == batch.max_priority_fee_per_gas
    (alert,) = alerts()  # one, after DELIVERY_SUBMITTED_ALERT_SECONDS
    assert alert.startswith(f"On-chain delivery: batch {batch.pk} not mined after 6")
    assert onchain_worker_status()["batches_stuck"] == 1 and report()["batches_stuck"] == 1

    ctl.evm_mine()  # blocks again: mined at the fees it was sent with
    receipt = w3.eth.get_transaction_receipt(batch.tx_hashes[0])
    assert receipt["effectiveGasPrice"] <= batch.max_fee_per_gas
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context)


def test_fees_above_the_ceiling_pause_delivery_instead_of_bumping_forever(on_anvil, settings):
    _, batch = one_batch_pending(on_anvil, settings, events=3)
    ctl = on_anvil.ctl
    settings.DELIVERY_MAX_FEE_PER_GAS_WEI = batch.max_fee_per_gas * 2
    ctl.set_next_block_base_fee(batch.max_fee_per_gas * 3)  # above the ceiling
    for _ in range(3):
        result = revenue_events_deliver(max_batches=1)
        assert result.paused == "fees_above_cap" and result.counters.replacements == 0
    assert len(DeliveryBatch.objects.get().tx_hashes) == 1  # no endless re-signing
    assert report()["pause"]["cause"] == "fees_above_cap"
    assert alerts() == ["On-chain delivery paused: fees_above_cap"]  # once, not per cycle
    settings.DELIVERY_MAX_FEE_PER_GAS_WEI = 500 * 10**9  # the operator raises the ceiling
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context)
    assert alerts()[-1] == "On-chain delivery resumed (fees_above_cap is gone)"


def test_a_nonce_gap_below_the_batch_is_filled(on_anvil, settings):
    settings.DELIVERY_STUCK_SECONDS = 3600
    events_create(4)
    ctl, context = on_anvil.ctl, on_anvil.context
    w3 = context.w3
    ctl.set_automine(False)
    gap = w3.eth.get_transaction_count(context.signer.address, "pending")
    max_fee, priority = suggest_fees(w3)
    # something of the platform's key holds nonce `gap` in the pool...
    lost = send_signed(
        w3,
        sign_tx(
            context.signer,
            build_self_transfer_tx(
                w3,
                signer_address=context.signer_address,
                nonce=gap,
                max_fee_per_gas=max_fee,
                max_priority_fee_per_gas=priority,
            ),
        ),
    )
    revenue_events_deliver(max_batches=1)
    batch = DeliveryBatch.objects.get()
    assert batch.nonce == gap + 1
    ctl.drop_transaction(lost)  # ...and never comes: the batch can never be mined
    ctl.mine(3)
    assert receipt_or_none(w3, batch.tx_hashes[0]) is None

    result = revenue_events_deliver(max_batches=1)
    assert result.counters.gaps_filled == 1 and result.counters.replacements == 0
    ctl.set_automine(True)
    ctl.mine(1)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    filler = w3.eth.get_block(w3.eth.get_transaction(batch.tx_hashes[0])["blockNumber"], full_transactions=True)
    fills = [tx for tx in filler["transactions"] if tx["nonce"] == gap]
    assert len(fills) == 1 and fills[0]["to"] == context.signer_address and fills[0]["value"] == 0
    batch.refresh_from_db()
    assert batch.tx_hashes == [batch.mined_tx_hash] and batch.nonce == gap + 1  # neither re-signed nor moved
    assert_delivered_exactly_once(context)


@pytest.mark.parametrize("when", ["before_broadcast", "after_broadcast"])
def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(on_anvil, monkeypatch, when):
    events_create(50)
    real_send = broadcast.send_signed

    def killed(*args, **kwargs):
        if when == "after_broadcast":
            real_send(*args, **kwargs)
        raise WorkerKilled

    monkeypatch.setattr(broadcast, "send_signed", killed)
    with pytest.raises(WorkerKilled):
        revenue_events_deliver(max_batches=5)
    assert statuses() == {"submitted": 50}
    monkeypatch.setattr(broadcast, "send_signed", real_send)
    results = drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert sum(r.counters.rebroadcasts for r in results) == (1 if when == "before_broadcast" else 0)
    assert DeliveryBatch.objects.count() == 1
    assert_delivered_exactly_once(on_anvil.context)


# --------------------------------------------------------------------------- operator faults


def test_the_node_down_for_a_minute_pauses_then_resumes(
    settings,
    anvil_factory,  # noqa: F811
    eth_market,
    tmp_path,
    clock,
    monkeypatch,
):
    node = anvil_factory(state_path=tmp_path / "anvil-state.json")
    context = deploy(settings, node.uri, tmp_path / "chain-signer.key")
    settings.DELIVERY_BATCH_SIZE = 100
    settings.DELIVERY_ALERT_REPEAT_SECONDS = 30
    settings.CHAIN_RPC_TIMEOUT_SECONDS = 1
    events_create(300)
    real_send = broadcast.send_signed
    sends = {"count": 0}

    def send_node_dies_at_second(*args, **kwargs):
        sends["count"] += 1
        if sends["count"] == 2:
            node.stop()  # dies after batch 2 was committed, before its broadcast
        return real_send(*args, **kwargs)

    monkeypatch.setattr(broadcast, "send_signed", send_node_dies_at_second)
    result = revenue_events_deliver(max_batches=5)
    monkeypatch.setattr(broadcast, "send_signed", real_send)
    assert result.paused == "node_unreachable" and result.counters.batches_sent == 2, result.as_dict()
    before = statuses()
    assert before == {"submitted": 200, "pending": 100}

    # A minute without the node: one cycle every 5 s (the beat's re-drive), on the clock.
    seen = []
    for _ in range(12):
        clock.advance(seconds=5)
        cycle = revenue_events_deliver(max_batches=5)
        assert cycle.paused == "node_unreachable"
        assert statuses() == before  # nothing moves, nothing fails
        seen.append((report()["pause"]["cause"], onchain_worker_status()["paused"]["cause"]))
    assert set(seen) == {("node_unreachable", "node_unreachable")}
    summary = report()
    assert summary["delivery_paused"] and summary["total_failures"] == 0 and summary["events_waiting"] == 100
    status = onchain_worker_status()
    assert status["chain"]["connected"] is False and status["counts"]["failed"] == 0
    assert DeliveryHeartbeat.objects.get().pause_cause == "node_unreachable"
    # alerted when it started and every 30 s while it lasted; no event used an attempt
    assert alerts() == ["On-chain delivery paused: node_unreachable"] + [
        alert for alert in alerts()[1:] if alert.startswith("On-chain delivery paused: node_unreachable (still")
    ]
    assert len(alerts()) == 3
    assert all(metadata(pk).retry_attempts == 0 for pk in RevenueEvent.objects.values_list("pk", flat=True))

    node.start()  # same port, chain from --state (batch 2 never reached it)
    drive(until=all_delivered, mine=node.evm_mine, max_batches=5, each=sound)
    assert_delivered_exactly_once(chain_context_get())
    assert DeliveryBatch.objects.filter(status="confirmed").count() == DeliveryBatch.objects.count() == 3
    assert alerts()[-1] == "On-chain delivery resumed (node_unreachable is gone)"
    assert onchain_worker_status()["paused"] is None and report()["delivery_paused"] is False
    assert context.contract_address == chain_context_get().contract_address


def test_the_contract_refusing_the_signer_pauses_delivery_until_it_is_fixed(on_anvil, settings, clock):
    settings.DELIVERY_BATCH_SIZE = 10
    settings.DELIVERY_STUCK_SECONDS = 3600
    ctl, context = on_anvil.ctl, on_anvil.context
    admin = dev_signer_fund(context.w3, amount_wei=10**20)
    wait_for_receipt(context.w3, owner_call(context, context.signer, "set_owner", admin.address), timeout=30)
    ids = events_create(20)
    ctl.set_automine(False)
    revenue_events_deliver(max_batches=1)  # batch A: events 1-10, pending
    first = DeliveryBatch.objects.get()
    owner_call(context, admin, "set_signer", context.signer_address, False, tip=10**10)  # ahead of A
    ctl.mine(1)
    assert receipt_or_none(context.w3, first.tx_hashes[0])["status"] == 0  # type: ignore[index]  # "not signer"
    ctl.set_automine(True)

    for _ in range(3):
        result = revenue_events_deliver(max_batches=5)
        ctl.mine(1)
        sound()
        assert result.paused == "signer_refused" and result.counters.batches_sent == 0
    first.refresh_from_db()
    assert first.status == "failed" and "signer_refused" in first.last_error
    assert statuses() == {"pending": 20}  # A's events came back without using an attempt
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)
    summary = report()
    assert summary["pause"]["cause"] == "signer_refused" and summary["total_failures"] == 0
    assert onchain_worker_status()["paused"]["cause"] == "signer_refused"
    assert alerts() == ["On-chain delivery paused: signer_refused"]
    clock.advance(seconds=settings.DELIVERY_ALERT_REPEAT_SECONDS + 1)
    revenue_events_deliver(max_batches=5)
    assert len(alerts()) == 2 and alerts()[1].startswith("On-chain delivery paused: signer_refused (still")

    wait_for_receipt(context.w3, owner_call(context, admin, "set_signer", context.signer_address, True), timeout=30)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)
    assert alerts()[-1] == "On-chain delivery resumed (signer_refused is gone)"
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)
    assert report()["pause"] is None


def test_the_signer_out_of_funds_pauses_then_resumes_when_topped_up(on_anvil, settings):
    settings.DELIVERY_BATCH_SIZE = 10
    settings.DELIVERY_LOW_BALANCE_BATCHES = 20
    ctl, context = on_anvil.ctl, on_anvil.context
    ids = events_create(30)
    # enough for a few batches, less than gas for 20: alerted before it runs dry, still delivering
    ctl.set_balance(context.signer_address, 2 * 10**16)
    result = revenue_events_deliver(max_batches=1)
    assert result.counters.batches_sent == 1 and not result.paused
    assert alerts() == ["On-chain delivery: the signer's balance is low"]
    assert onchain_worker_status()["signer_balance_low"] is True

    ctl.set_balance(context.signer_address, 10**12)  # dry
    for _ in range(3):
        result = revenue_events_deliver(max_batches=5)
        ctl.mine(1)
        sound()
        assert result.paused == "insufficient_funds" and result.counters.batches_sent == 0
    assert report()["pause"]["cause"] == "insufficient_funds" and report()["total_failures"] == 0
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)
    assert alerts()[1:] == ["On-chain delivery paused: insufficient_funds"]

    ctl.set_balance(context.signer_address, 10**21)  # topped up
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)
    assert alerts()[-1] == "On-chain delivery resumed (insufficient_funds is gone)"
    assert onchain_worker_status()["signer_balance_low"] is False


def test_a_share_the_signer_cannot_pay_is_held_and_paid_once_the_balance_allows(on_anvil, settings):
    """One holder share the signer cannot pay (a 1e21-scale trade's: 7.5e34 wei) and one it
    cannot pay yet (2.25e23 wei against 1,000 ETH). Before, every batch carrying them was
    refused for funds and delivery paused (`insufficient_funds`) until the wallet held the
    absurd amount: nothing else was paid. Now both are held (visibly, alerted once), every
    other event is paid, and the second is paid by itself once the balance allows."""
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.set_balance(context.signer_address, 10**21)
    first = events_create(4, prefix="a")
    huge = revenue_collect(stream=1, amount="1" + "0" * 21, description="x", source_type="t", source_id="huge").pk
    big = revenue_collect(stream=2, amount="3000000000", description="x", source_type="t", source_id="big").pk
    later = events_create(4, prefix="b")
    results = drive(until=lambda: statuses() == {"delivered": 8, "pending": 2}, mine=on_anvil.mine, each=sound)
    assert not any(r.paused for r in results) and report()["pause"] is None
    summary = report()
    assert summary["held_for_funds"] == 2 and summary["total_failures"] == 2
    assert {metadata(pk).held_cause for pk in (huge, big)} == {"insufficient_funds"}
    assert onchain_worker_status()["held_for_funds"] == 2
    assert alerts() == ["On-chain delivery: 2 revenue event(s) held, the signer cannot pay their share"]

    ctl.set_balance(context.signer_address, 10**24)  # enough for the big one, never for the absurd one
    drive(until=lambda: statuses() == {"delivered": 9, "pending": 1}, mine=on_anvil.mine, each=sound)
    for _ in range(3):
        revenue_events_deliver(max_batches=5)
        on_anvil.mine()
        sound()
    assert metadata(big).held_at is None and metadata(huge).held_cause == "insufficient_funds"
    logs, total = onchain(context)
    paid = [log.item_id for log in logs]
    assert sorted(paid) == sorted(first + later + [big]) and huge not in paid
    assert {log.item_id: log.amount for log in logs} == expected_wei(first + later + [big])
    assert total == sum(log.amount for log in logs)
    assert report()["held_for_funds"] == 1 and len(alerts()) == 1


def test_a_batch_whose_gas_is_above_what_the_budget_kept_is_sent_smaller(on_anvil, settings, monkeypatch):
    """The budget keeps the gas the last batches were given; a bigger batch's own gas can be
    more than the balance leaves. It is planned again smaller (here its older half, the gas
    being most of it) instead of pausing delivery with `insufficient_funds` while the signer
    can pay a smaller batch."""
    ctl, context = on_anvil.ctl, on_anvil.context
    settings.DELIVERY_MIN_ITEM_WEI = 0
    ids = events_create(64, gross="0.001", spread=False)
    amounts = expected_wei(ids)
    streams = dict(RevenueEvent.objects.values_list("pk", "stream_id"))
    items = [DeliveryItem(item_id=pk, stream_id=streams[pk], amount_wei=amounts[pk]) for pk in ids]
    max_fee, priority = fees_capped(chain_view_read(context))
    gas = build_delivery_tx(
        context.w3, contract_address=context.contract_address, signer_address=context.signer_address, items=items,
        nonce=0, max_fee_per_gas=max_fee, max_priority_fee_per_gas=priority,
    )["gas"]  # fmt: skip
    ctl.set_balance(context.signer_address, gas * max_fee // 2 + sum(amounts.values()))  # half a batch of 64's gas
    monkeypatch.setattr(health, "delivery_batch_gas_typical", lambda: 21_000)  # only small batches lately

    result = revenue_events_deliver(max_batches=1)
    sound()
    assert not result.paused and result.counters.batches_sent == 1, result.as_dict()
    batch = DeliveryBatch.objects.get()
    assert 0 < batch.size < 64 and batch.event_ids == ids[: batch.size]  # the oldest first
    ctl.set_balance(context.signer_address, 10**21)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)
    assert all(metadata(pk).retry_attempts == 0 for pk in ids) and report()["pause"] is None


def test_a_saved_batch_refused_for_funds_at_broadcast_is_re_signed_smaller_at_its_nonce(
    on_anvil, settings, monkeypatch
):
    """The operator withdraws from the signer between the batch's planning (signed and
    saved within the balance then) and its broadcast: the node refuses it for funds. Before,
    delivery paused (`insufficient_funds`), every rebroadcast refused the same way, while the
    signer could pay a smaller batch. It is re-signed at the same nonce with what the balance
    pays; the item left out stays with that nonce until the version mined is confirmed, then
    is paid once by a later batch."""
    ctl, context = on_anvil.ctl, on_anvil.context
    # the newest share is big (7.5 ETH): what is left once it is left out pays the next batches' gas
    ids = [
        *events_create(5),
        revenue_collect(stream=2, amount="100000", description="x", source_type="t", source_id="big").pk,
    ]
    real_broadcast = broadcast.batch_broadcast
    withdrawn: list[int] = []

    def withdraw_then_send(context, view, batch, counters, **kwargs):
        if not withdrawn:  # the first broadcast of the batch just saved
            withdrawn.append(int(batch.value_wei) - 1 + batch.gas * batch.max_fee_per_gas)
            ctl.set_balance(context.signer_address, withdrawn[0])
        return real_broadcast(context, view, batch, counters, **kwargs)

    monkeypatch.setattr(broadcast, "batch_broadcast", withdraw_then_send)
    result = revenue_events_deliver(max_batches=1)
    sound()
    assert not result.paused and result.counters.events_failed == 0, result.as_dict()
    batch = DeliveryBatch.objects.get()
    (first, second) = batch.tx_hashes
    assert receipt_or_none(context.w3, first) is None and context.w3.eth.get_transaction(second)["nonce"] == batch.nonce
    left_out = [pk for pk in ids if pk not in batch.event_ids]
    assert left_out == ids[-1:] and batch.left_out_item_ids == left_out  # what the balance did not pay
    assert metadata(left_out[0]).batch_id == batch.pk and metadata(left_out[0]).status == DeliveryStatus.SUBMITTED

    ctl.set_balance(context.signer_address, 10**21)  # topped up
    tied = left_out_tied(batch.pk, left_out)
    results = drive(until=all_delivered, mine=on_anvil.mine, each=lambda r: (sound(r), tied(r)))
    assert not any(r.paused for r in results) and report()["pause"] is None
    batch.refresh_from_db()
    assert batch.mined_tx_hash == second and batch.left_out_item_ids == []
    assert metadata(left_out[0]).batch_id != batch.pk
    assert_delivered_exactly_once(context)
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)


def test_a_batch_whose_send_timed_out_then_refused_for_funds_keeps_its_left_out_item_for_the_original(
    on_anvil, settings, monkeypatch
):
    """The batch's first send times out (it may have reached some node's pool), then the
    operator withdraws from the signer: its rebroadcast is refused for funds and it is
    re-signed smaller at the same nonce. The original bytes, held by another node, are the
    ones mined: the item the smaller version left out, still tied to the nonce, is paid by
    them, once; it was never sent again meanwhile."""
    ctl, context = on_anvil.ctl, on_anvil.context
    w3 = context.w3
    small = events_create(5)
    big = revenue_collect(stream=2, amount="100000", description="x", source_type="t", source_id="big").pk
    ids = [*small, big]  # the big share, newest, is what the balance no longer pays
    real_send = broadcast.send_signed
    calls: list[str] = []

    def timed_out_once(w3, signed):
        calls.append(signed.tx_hash)
        if len(calls) == 1:
            raise ChainUnavailable("chain node unavailable: ReadTimeout")  # the outcome is unknown
        return real_send(w3, signed)

    monkeypatch.setattr(broadcast, "send_signed", timed_out_once)
    ctl.set_automine(False)
    assert revenue_events_deliver(max_batches=1).paused == "node_unreachable"
    batch = DeliveryBatch.objects.get()
    (first,) = batch.tx_hashes
    first_raw = bytes(HexBytes(batch.signed_raw_tx))
    ctl.set_balance(context.signer_address, int(batch.value_wei) - 1 + batch.gas * batch.max_fee_per_gas)

    result = revenue_events_deliver(max_batches=1)
    sound()
    assert not result.paused and result.counters.events_failed == 0, result.as_dict()
    batch.refresh_from_db()
    (_, second) = batch.tx_hashes
    assert batch.nonce == w3.eth.get_transaction(second)["nonce"] and batch.left_out_item_ids == [big]
    assert metadata(big).batch_id == batch.pk and metadata(big).status == DeliveryStatus.SUBMITTED
    tied = left_out_tied(batch.pk, [big])
    ctl.set_balance(context.signer_address, 10**21)  # topped up: the big share is payable again
    for _ in range(2):  # the smaller version waits in the pool; the big share waits with it
        revenue_events_deliver(max_batches=5)
        sound()
        tied(None)

    # another node held the original: it is mined, not the smaller version
    ctl.drop_transaction(second)
    send_signed(w3, SignedTx(first_raw, first))
    ctl.evm_mine()
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=lambda r: (sound(r), tied(r)))
    batch.refresh_from_db()
    assert batch.mined_tx_hash == first and sorted(batch.event_ids) == sorted(ids) and batch.left_out_item_ids == []
    assert DeliveryBatch.objects.count() == 1 and metadata(big).tx_hash == first
    assert_delivered_exactly_once(context)
    assert all(metadata(pk).retry_attempts == 0 for pk in ids)


@pytest.mark.parametrize("mined", ["replacement", "original"])
def test_a_fee_bump_the_balance_cannot_pay_is_a_smaller_replacement_at_the_same_nonce(on_anvil, settings, mined):
    """A batch whose value is nearly the whole budget, pending and passed over by a block,
    is replaced with fees +12.5%: its value and the dearer gas are more than the balance.
    Before, the replacement was refused for funds and delivery paused (`insufficient_funds`).
    It now carries what the balance pays at the higher fee; the items it leaves out stay with
    that nonce until the version mined is known: paid by the original if it is the one mined
    (never sent again meanwhile), else paid once by a later batch."""
    ids, batch = one_batch_pending(on_anvil, settings, events=6)
    ctl, context = on_anvil.ctl, on_anvil.context
    w3 = context.w3
    (first,) = batch.tx_hashes
    gas_cost = batch.gas * batch.max_fee_per_gas
    ctl.set_balance(context.signer_address, int(batch.value_wei) + gas_cost + gas_cost // 20)  # not +12.5%
    limit = int(w3.eth.get_block("latest")["gasLimit"])
    ctl.rpc("evm_setBlockGasLimit", hex(batch.gas - 1))  # a block made without it: passed over
    ctl.evm_mine()
    ctl.rpc("evm_setBlockGasLimit", hex(limit))
    settings.DELIVERY_STUCK_SECONDS = 0

    result = revenue_events_deliver(max_batches=1)
    sound()
    assert not result.paused and result.counters.replacements == 1, result.as_dict()
    replaced = DeliveryBatch.objects.get()
    (_, second) = replaced.tx_hashes  # signed within the balance at once: no version refused first
    assert replaced.nonce == batch.nonce and w3.eth.get_transaction(second)["nonce"] == batch.nonce
    assert replaced.max_fee_per_gas * 1000 >= batch.max_fee_per_gas * 1125
    assert int(replaced.value_wei) + replaced.gas * replaced.max_fee_per_gas <= w3.eth.get_balance(
        context.signer_address
    )
    left_out = [pk for pk in ids if pk not in replaced.event_ids]
    assert left_out and replaced.left_out_item_ids == left_out
    assert all(metadata(pk).batch_id == batch.pk and metadata(pk).status == DeliveryStatus.SUBMITTED for pk in ids)
    settings.DELIVERY_STUCK_SECONDS = 3600
    ctl.set_balance(context.signer_address, 10**21)  # topped up
    tied = left_out_tied(batch.pk, left_out)
    if mined == "original":  # a builder that still held the original mines it
        ctl.drop_transaction(second)
        send_signed(w3, SignedTx(bytes(HexBytes(batch.signed_raw_tx)), first))
    else:
        for _ in range(3):  # the replacement waits in the pool: the items it left out wait with it
            revenue_events_deliver(max_batches=5)
            sound()
            tied(None)
    ctl.evm_mine()
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=lambda r: (sound(r), tied(r)))
    replaced.refresh_from_db()
    assert replaced.mined_tx_hash == (first if mined == "original" else second)
    assert replaced.left_out_item_ids == []
    if mined == "original":
        assert sorted(replaced.event_ids) == ids and DeliveryBatch.objects.count() == 1
        assert all(metadata(pk).tx_hash == first for pk in ids)
    else:
        assert all(metadata(pk).batch_id != batch.pk for pk in left_out)
    assert_delivered_exactly_once(context)
    assert all(metadata(pk).retry_attempts == 0 for pk in ids) and report()["pause"] is None


@pytest.mark.parametrize("fault", ["contract_paused", "contract_missing", "wrong_chain_id"])
def test_other_operator_faults_pause_delivery_and_resume(on_anvil, settings, anvil_factory, fault):  # noqa: F811
    events_create(5)
    context = on_anvil.context
    undo: Any
    if fault == "contract_paused":
        wait_for_receipt(context.w3, owner_call(context, context.signer, "set_paused", True), timeout=30)

        def undo() -> None:
            wait_for_receipt(context.w3, owner_call(context, context.signer, "set_paused", False), timeout=30)

    elif fault == "contract_missing":
        real = context.contract_address
        ChainDeployment.objects.filter(pk=context.deployment_id).update(contract_address="0x" + "ab" * 20)
        chain_context_reset()

        def undo() -> None:
            ChainDeployment.objects.filter(pk=context.deployment_id).update(contract_address=real)
            chain_context_reset()

    else:
        other = anvil_factory(chain_id=5)
        settings.WEB3_PROVIDER_URI = other.uri

        def undo() -> None:
            settings.WEB3_PROVIDER_URI = on_anvil.ctl.uri

    for _ in range(2):
        result = revenue_events_deliver(max_batches=1)
        assert result.paused == fault and result.counters.batches_sent == 0
    assert statuses() == {"pending": 5} and report()["pause"]["cause"] == fault
    assert alerts() == [f"On-chain delivery paused: {fault}"]
    undo()
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(chain_context_get())
    assert alerts()[-1] == f"On-chain delivery resumed ({fault} is gone)"


def test_a_node_switching_chains_mid_cycle_takes_nothing_back(on_anvil, settings, anvil_factory, monkeypatch):  # noqa: F811
    """The node behind WEB3_PROVIDER_URI switches to another chain in the middle of a cycle
    (a balancer with a backend on another chain). The chain id was checked once per cycle:
    the rest of it read the other chain, the scan took the reserve's confirmed payments back
    as reorged, the other chain refused the platform's bytes ("invalid chain id") and their
    batches, mined on the real chain, failed with an attempt of their events; the pause said
    `insufficient_funds`. Now every step checks the chain id, and such a refusal is the
    operator fault `wrong_chain_id`."""
    settings.DELIVERY_BATCH_SIZE = 3
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.mine(5)
    first = events_create(3)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    confirmed = DeliveryBatch.objects.get()
    events_create(6, prefix="later")
    other = anvil_factory(chain_id=5)
    real_send = broadcast.send_signed

    def send_then_switch(w3: Any, signed: SignedTx) -> str:
        tx_hash = real_send(w3, signed)
        w3.provider.endpoint_uri = other.uri  # from now on the URL answers for chain 5
        return tx_hash

    monkeypatch.setattr(broadcast, "send_signed", send_then_switch)
    result = revenue_events_deliver(max_batches=2)
    assert result.paused == "wrong_chain_id" and result.counters.batches_sent == 1
    assert result.counters.reorgs_detected == result.counters.events_failed == 0
    confirmed.refresh_from_db()
    assert confirmed.status == "confirmed" and all(metadata(pk).status == DeliveryStatus.DELIVERED for pk in first)
    sent = DeliveryBatch.objects.exclude(pk=confirmed.pk).get()
    assert sent.status == "submitted"  # mined on the real chain: not failed
    for _ in range(2):  # the next cycles pause at once, on the other chain
        assert revenue_events_deliver(max_batches=2).paused == "wrong_chain_id"
    assert alerts() == ["On-chain delivery paused: wrong_chain_id"]

    monkeypatch.setattr(broadcast, "send_signed", real_send)
    context.w3.provider.endpoint_uri = ctl.uri  # back on its chain
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)
    assert all(metadata(pk).retry_attempts == 0 for pk in RevenueEvent.objects.values_list("pk", flat=True))
    assert DeliveryBatch.objects.filter(status="failed").count() == 0
    assert alerts()[-1] == "On-chain delivery resumed (wrong_chain_id is gone)"


# --------------------------------------------------------------------------- dust and prices


def test_a_dust_only_stream_is_carried_forward_then_paid_as_one_bundle(on_anvil, settings, clock):
    settings.DELIVERY_MIN_ITEM_WEI = 10**13  # 0.02 USD at 2,000 USD/ETH
    # 0.0015 USD shares (7.5e11 wei): 13 of them are not worth a transaction...
    dust = events_create(13, gross="0.01", streams=1, first_stream=7, spread=False, prefix="dust")
    normal = events_create(5, prefix="normal", streams=1, first_stream=2)
    drive(until=lambda: all(metadata(pk).status == DeliveryStatus.DELIVERED for pk in normal), mine=on_anvil.mine)
    assert all(metadata(pk).status == DeliveryStatus.PENDING and metadata(pk).carried_at for pk in dust)
    assert not DeliveryBundle.objects.exists()
    summary = report()
    assert summary["dust_carried"] == 13 and summary["total_failures"] == 0
    assert sum(expected_wei(dust).values()) < settings.DELIVERY_MIN_ITEM_WEI
    clock.advance(minutes=30)  # carried, not stale: no failure either
    assert report()["total_failures"] == 0

    # ...a fourteenth is: the stream's dust becomes one bundle, one item on-chain
    dust += events_create(1, gross="0.01", streams=1, first_stream=7, spread=False, prefix="dust-last")
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    bundle = DeliveryBundle.objects.get()
    assert sorted(bundle.event_ids) == sorted(dust) and bundle.stream_id == 7
    assert int(bundle.amount_wei) == sum(expected_wei(dust).values()) >= settings.DELIVERY_MIN_ITEM_WEI
    logs, _ = onchain(on_anvil.context)
    assert len(logs) == 5 + 1  # the normal events and the bundle
    assert_delivered_exactly_once(on_anvil.context)
    assert len({metadata(pk).tx_hash for pk in dust}) == 1


def test_old_dust_is_paid_even_below_the_minimum(on_anvil, settings, clock):
    settings.DELIVERY_MIN_ITEM_WEI = 10**13
    settings.DELIVERY_DUST_MAX_AGE_SECONDS = 3600
    dust = events_create(3, gross="0.01", streams=1, first_stream=5, spread=False)
    revenue_events_deliver(max_batches=1)
    assert all(metadata(pk).carried_at for pk in dust)
    clock.advance(seconds=3601)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert DeliveryBundle.objects.get().event_ids == dust
    assert_delivered_exactly_once(on_anvil.context)


def _trade_at(price: str, seller: Any, buyer: Any) -> None:
    fund(seller, "ETH", "1")
    fund(buyer, "USDT", "10000")
    order_place(
        user=seller, request=OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="0.5", price=price)
    )
    order_place(user=buyer, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="0.5"))


def test_a_mistyped_reference_price_pauses_instead_of_paying(on_anvil, settings, user, other_user):
    for _ in range(3):
        _trade_at("2000.00", other_user, user)  # recent trades around 2,000 USD/ETH
    events_create(10)
    eth = Market.objects.get(symbol="ETH-USDT")
    eth.reference_price = Decimal("2.00")  # a typo: 1,000 times too much ETH per dollar
    eth.save(update_fields=["reference_price"])
    for _ in range(2):
        result = revenue_events_deliver(max_batches=5)
        assert result.paused == "price_out_of_bounds" and result.counters.batches_sent == 0
    assert onchain(on_anvil.context)[1] == 0  # nothing paid at the wrong price
    assert "2.00" in report()["pause"]["detail"] and report()["total_failures"] == 0
    assert alerts() == ["On-chain delivery paused: price_out_of_bounds"]

    eth.reference_price = Decimal("2010.00")  # corrected, within the bound of the trades
    eth.save(update_fields=["reference_price"])
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context, price=Decimal("2010.00"))
    assert alerts()[-1] == "On-chain delivery resumed (price_out_of_bounds is gone)"


# --------------------------------------------------------------------------- deployments


def test_chain_deploy_dev_writes_a_private_key_file_and_supersedes(settings, anvil, anvil_ctl, tmp_path):  # noqa: F811
    key_file = tmp_path / "var" / "chain-signer.key"
    settings.WEB3_PROVIDER_URI = anvil
    settings.CHAIN_SIGNER_PRIVATE_KEY = ""
    settings.CHAIN_SIGNER_KEY_FILE = key_file
    out = io.StringIO()
    call_command("chain_deploy", "--dev", stdout=out)
    key = key_file.read_text().strip()
    assert key.startswith("0x") and len(key) == 66
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key[2:] not in out.getvalue()
    first = ChainDeployment.objects.get(active=True)
    assert first.chain_id == 31337 and first.contract_address in out.getvalue()
    chain_context_reset()
    context = chain_context_get()
    assert (context.contract_address, context.signer_address) == (first.contract_address, first.signer_address)

    call_command("chain_deploy", "--dev", "--replace", stdout=io.StringIO())
    first.refresh_from_db()
    second = ChainDeployment.objects.get(active=True)
    assert not first.active and second.pk != first.pk and second.signer_address != first.signer_address
    assert chain_context_get().contract_address == second.contract_address  # workers follow the new one


def test_chain_deploy_run_again_by_mistake_deploys_nothing(on_anvil, settings):
    """Run a second time (a copied runbook, a retried release job), it deployed a second
    reserve without a word, and every holder share from then on went to it. A chain with an
    active deployment now takes --replace."""
    key_before = settings.CHAIN_SIGNER_KEY_FILE.read_text()
    for args in (("--dev",), ("--dev", "--force"), ()):
        with pytest.raises(CommandError, match=r"already has an active HolderReserve.*--replace"):
            call_command("chain_deploy", *args, stdout=io.StringIO())
    assert ChainDeployment.objects.get().pk == on_anvil.context.deployment_id
    assert settings.CHAIN_SIGNER_KEY_FILE.read_text() == key_before  # no new dev key either
    call_command("chain_deploy", "--dev", "--replace", stdout=io.StringIO())
    assert ChainDeployment.objects.get(active=True).pk != on_anvil.context.deployment_id


def test_chain_deploy_refuses_to_strand_batches_in_flight(on_anvil, settings):
    events_create(2)
    on_anvil.ctl.set_automine(False)
    revenue_events_deliver(max_batches=1)
    with pytest.raises(CommandError, match="in flight"):
        call_command("chain_deploy", "--dev", "--replace", stdout=io.StringIO())
    on_anvil.ctl.set_automine(True)
    call_command("chain_deploy", "--dev", "--replace", "--force", stdout=io.StringIO())
    assert DeliveryBatch.objects.get().status == "superseded" and statuses() == {"pending": 2}


def test_chain_deploy_refuses_while_the_delivery_worker_is_in_a_cycle(on_anvil, settings, monkeypatch):
    """The redeploy checked for batches in flight, then deployed (a transaction and its
    receipt: seconds) and superseded the old deployment, without the delivery lock: a batch
    the worker sent meanwhile was superseded and its events returned to pending, while its
    transaction paid them on the old reserve; the new reserve paid them again. It now runs as
    the only sender, or not at all."""
    import threading

    import revenue.management.commands.chain_deploy as command
    from revenue.delivery.lock import delivery_sender_lock

    monkeypatch.setattr(command, "LOCK_WAIT_SECONDS", 0.5, raising=False)
    events_create(2)
    key_before = settings.CHAIN_SIGNER_KEY_FILE.read_text()
    holding, release = threading.Event(), threading.Event()

    def worker_in_a_cycle() -> None:  # its own session (PostgreSQL) or thread (SQLite) holds the lock
        with delivery_sender_lock() as acquired:
            assert acquired
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=delivery_support.in_thread, args=(worker_in_a_cycle,))
    thread.start()
    try:
        assert holding.wait(30)
        with pytest.raises(CommandError, match="delivery worker is in a cycle"):
            call_command("chain_deploy", "--dev", stdout=io.StringIO())
    finally:
        release.set()
        thread.join(30)
    assert ChainDeployment.objects.get(active=True).pk == on_anvil.context.deployment_id
    assert settings.CHAIN_SIGNER_KEY_FILE.read_text() == key_before  # the signer's key is not replaced either
    call_command("chain_deploy", "--dev", "--replace", stdout=io.StringIO())  # the lock free: deployed
    assert ChainDeployment.objects.get(active=True).pk != on_anvil.context.deployment_id


def test_chain_deploy_with_a_production_key_and_its_guards(settings, anvil, anvil_ctl, anvil_factory, tmp_path):  # noqa: F811
    w3 = connect(provider_uri=anvil)
    account = dev_signer_fund(w3, amount_wei=10**20)
    settings.WEB3_PROVIDER_URI = anvil
    settings.CHAIN_SIGNER_KEY_FILE = tmp_path / "absent.key"
    settings.CHAIN_SIGNER_PRIVATE_KEY = "0x" + bytes(account.key).hex()
    call_command("chain_deploy", stdout=io.StringIO())
    assert ChainDeployment.objects.get(active=True).signer_address == account.address
    assert not (tmp_path / "absent.key").exists()

    other = anvil_factory(chain_id=5)
    settings.WEB3_PROVIDER_URI = other.uri
    with pytest.raises(CommandError, match="dev chains only"):
        call_command("chain_deploy", "--dev", stdout=io.StringIO())
    settings.WEB3_PROVIDER_URI = ""
    with pytest.raises(CommandError, match="embedded"):
        call_command("chain_deploy", stdout=io.StringIO())


def test_a_node_restarted_from_state_older_than_a_final_batch_takes_its_payment_back(on_anvil, settings):
    """The node comes back from a state older than a batch the platform saw final (a
    restore from an old snapshot, a dev node reset): the batch's payment is not in the
    canonical chain any more. Its events are not left `delivered`: they are taken back,
    paid again once, and an operator hears that finality was broken."""
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.mine(5)
    older = ctl.snapshot()  # the state the node will come back with
    ids = events_create(6)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    ctl.mine(70)  # anvil's `finalized` is 64 deep
    revenue_events_deliver(max_batches=1)
    batch = DeliveryBatch.objects.get()
    assert batch.status == "confirmed" and batch.finalized_at is not None
    assert ctl.revert(older)  # the node restarted from older state: the batch was never mined there
    assert receipt_or_none(context.w3, batch.mined_tx_hash) is None

    result = revenue_events_deliver(max_batches=1)
    sound()
    assert result.counters.reorgs_detected == 1 and result.counters.reorged_batches == 1
    assert DeliveryStatus.DELIVERED not in statuses()
    assert any(alert.startswith("On-chain delivery: a final payment left the chain") for alert in alerts())
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)
    batch.refresh_from_db()
    assert batch.status == "confirmed" and DeliveryBatch.objects.count() == 1
    assert all(metadata(pk).reorged_at for pk in ids)
    assert distributed_total() == holder_total()


def test_chain_deploy_force_never_returns_the_events_of_a_mined_batch(on_anvil, settings):
    """A batch mined on the active reserve, not yet confirmed, has paid its events: a
    forced redeploy returned them to pending and the new reserve paid them again."""
    ids = events_create(3)
    revenue_events_deliver(max_batches=1)  # automine: mined at once, 1 confirmation of 2

    def seen_mined() -> bool:
        # On a loaded machine the cycle that sent it may not find its receipt yet: the next does.
        if DeliveryBatch.objects.get().block_number is None:
            revenue_events_deliver(max_batches=1)
        return DeliveryBatch.objects.get().block_number is not None

    wait_until(seen_mined, what="the batch recorded as mined", timeout=30, interval=0.2)
    batch = DeliveryBatch.objects.get()
    assert batch.status == "submitted" and batch.block_number is not None
    with pytest.raises(CommandError, match="mined"):
        call_command("chain_deploy", "--dev", "--replace", "--force", stdout=io.StringIO())
    assert ChainDeployment.objects.filter(active=True).get().pk == on_anvil.context.deployment_id
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context)
    assert all(metadata(pk).tx_hash == batch.tx_hashes[0] for pk in ids)
    on_anvil.ctl.mine(70)  # final (anvil's `finalized` is 64 deep): no reorg can take the payment back
    call_command("chain_deploy", "--dev", "--replace", stdout=io.StringIO())  # nothing in flight any more
    assert statuses() == {"delivered": 3}


def test_chain_deploy_refuses_while_a_confirmed_batch_is_not_final(on_anvil, settings):
    """A confirmed batch (its events `delivered`) not final yet can still leave the chain in
    a reorg deeper than the confirmations, and the worker re-checks only the active
    deployment's payments. Redeployed meanwhile, a reorg that gave the batch's nonce to
    another transaction left its events `delivered` for ever with no payment on the
    canonical chain, and no alert. The redeploy now waits until the batch is final."""
    ctl, context = on_anvil.ctl, on_anvil.context
    w3 = context.w3
    ctl.mine(5)  # keep the reorg away from the contract's own deployment
    ids = events_create(3)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    batch = DeliveryBatch.objects.get(status="confirmed")
    assert batch.finalized_at is None
    ctl.mine(1)
    for args in (("--dev", "--replace"), ("--dev", "--replace", "--force")):
        with pytest.raises(CommandError, match=r"1 confirmed batch.* not final"):
            call_command("chain_deploy", *args, stdout=io.StringIO())
    assert ChainDeployment.objects.get(active=True).pk == context.deployment_id

    # The reorg the redeploy would have hidden: the batch's nonce goes to another transaction.
    max_fee, priority = suggest_fees(w3)
    rival = sign_tx(
        context.signer,
        build_self_transfer_tx(
            w3, signer_address=context.signer_address, nonce=batch.nonce, max_fee_per_gas=max_fee * 2,
            max_priority_fee_per_gas=priority,
        ),
    )  # fmt: skip
    depth = w3.eth.block_number - batch.block_number + 1
    assert depth > settings.CHAIN_CONFIRMATIONS
    ctl.reorg(depth, [(HexBytes(rival.raw_transaction).to_0x_hex(), 0)])
    assert receipt_or_none(w3, batch.mined_tx_hash) is None
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)  # taken back, paid again once
    assert_delivered_exactly_once(context)
    assert all(metadata(pk).reorged_at for pk in ids)

    ctl.mine(70)  # final now
    call_command("chain_deploy", "--dev", "--replace", stdout=io.StringIO())
    assert ChainDeployment.objects.get(active=True).pk != context.deployment_id
    assert statuses() == {"delivered": 3}


def _first_version_mined(on_anvil: Any, settings: Any) -> tuple[Any, Any, list[int], DeliveryBatch]:
    """One batch of 10 events sent with automine off, its first version mined (1
    confirmation) and seen by a cycle: (the node's controls, the chain context, the event
    ids, the batch)."""
    settings.DELIVERY_BATCH_SIZE = 10
    settings.DELIVERY_STUCK_SECONDS = 3600
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.mine(5)  # keep the reorgs away from the contract's own deployment
    ids = events_create(10)
    ctl.set_automine(False)
    revenue_events_deliver(max_batches=1)
    batch = DeliveryBatch.objects.get()
    ctl.mine(1)  # the first version is mined, 1 confirmation
    revenue_events_deliver(max_batches=1)
    return ctl, context, ids, batch


def test_a_reorg_back_to_a_fork_where_two_versions_of_a_batch_are_mined_delivers_its_events(on_anvil, settings):
    """A flip-flop reorg: the batch's first version is mined, a fork with another
    transaction of the platform's key at its nonce wins (the batch is rebuilt at the next
    nonce), then the first fork comes back holding both versions. The first pays, the
    rebuilt one finds every item paid (refunded): the events are delivered by the first,
    never left `submitted` under a batch that paid nothing."""
    ctl, context, ids, batch = _first_version_mined(on_anvil, settings)
    w3, first, nonce = context.w3, batch.signed_raw_tx, batch.nonce
    batch.refresh_from_db()
    assert batch.mined_tx_hash == batch.tx_hashes[0]
    max_fee, priority = suggest_fees(w3)
    rival = sign_tx(
        context.signer,
        build_self_transfer_tx(
            w3, signer_address=context.signer_address, nonce=batch.nonce, max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority,
        ),
    )  # fmt: skip
    ctl.reorg(1, [(HexBytes(rival.raw_transaction).to_0x_hex(), 0)])  # the other fork wins
    assert receipt_or_none(w3, batch.tx_hashes[0]) is None
    result = revenue_events_deliver(max_batches=1)
    sound()
    batch.refresh_from_db()
    assert result.counters.reorged_batches == 1 and result.counters.rebuilds == 1
    assert len(batch.tx_hashes) == 2 and batch.nonce == nonce + 1
    rebuilt = batch.signed_raw_tx
    ctl.reorg(2, [(first, 0), (rebuilt, 0)])  # the first fork comes back with both versions
    assert receipt_or_none(w3, batch.tx_hashes[0])["status"] == 1  # type: ignore[index]
    assert receipt_or_none(w3, batch.tx_hashes[1])["status"] == 1  # type: ignore[index]
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound, cycles=10)
    assert_delivered_exactly_once(context)
    batch.refresh_from_db()
    assert batch.status == "confirmed" and batch.mined_tx_hash == batch.tx_hashes[0]
    assert all(metadata(pk).tx_hash == batch.tx_hashes[0] for pk in ids)


def test_a_reorg_back_to_a_fork_where_a_rebuilt_batchs_first_version_paid_more_items(on_anvil, settings):
    """As above, but the other fork's transaction at the batch's nonce paid some of its
    items, so the batch was rebuilt without them; then the first fork comes back. Its first
    version paid every item, the rebuilt one found them paid. Before, the batch kept the
    rebuilt version's items: the events only the first version carried stayed pending,
    went out again in a new batch that the reserve refunded, and were left `submitted`
    under that confirmed batch for ever, paid on chain and never delivered."""
    ctl, context, ids, batch = _first_version_mined(on_anvil, settings)
    w3, first, nonce = context.w3, batch.signed_raw_tx, batch.nonce
    rival = signed_by_the_platform_key(context, ids[:3], nonce=nonce)
    ctl.reorg(1, [(HexBytes(rival.raw_transaction).to_0x_hex(), 0)])  # the other fork pays 3 of its items
    result = revenue_events_deliver(max_batches=1)
    sound()
    assert result.counters.adopted_batches == 1 and result.counters.rebuilds == 1
    batch.refresh_from_db()
    assert batch.event_ids == ids[3:] and batch.nonce == nonce + 1
    ctl.reorg(2, [(first, 0), (batch.signed_raw_tx, 0)])  # the first fork comes back with both versions
    assert receipt_or_none(w3, batch.tx_hashes[0])["status"] == 1  # type: ignore[index]
    assert receipt_or_none(w3, batch.tx_hashes[1])["status"] == 1  # type: ignore[index]
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound, cycles=10)
    assert_delivered_exactly_once(context)
    assert distributed_total() == holder_total()
    batch.refresh_from_db()
    assert batch.status == "confirmed" and batch.mined_tx_hash == batch.tx_hashes[0]
    assert sorted(batch.event_ids) == ids
    assert all(metadata(pk).tx_hash == batch.tx_hashes[0] for pk in ids)
    assert DeliveryBatch.objects.filter(foreign=False).count() == 1  # nothing sent again


def test_a_batch_flipping_between_its_versions_mined_carries_what_the_one_mined_carried(on_anvil, settings):
    """Fork A: the batch's first version pays all its items (the batch takes them back from
    its rebuilt version); fork B: the rival pays three, the rebuilt version the rest. The
    batch carries, each time, what the version mined carried: the three are the rival's
    again, never counted as paid by a version that did not carry them."""
    ctl, context, ids, batch = _first_version_mined(on_anvil, settings)
    first = batch.signed_raw_tx
    rival = HexBytes(signed_by_the_platform_key(context, ids[:3], nonce=batch.nonce).raw_transaction).to_0x_hex()
    ctl.reorg(1, [(rival, 0)])
    revenue_events_deliver(max_batches=1)  # rival adopted, the batch rebuilt without its 3 items
    batch.refresh_from_db()
    rebuilt = batch.signed_raw_tx
    ctl.reorg(1, [(first, 0), (rebuilt, 0)])  # fork A
    revenue_events_deliver(max_batches=1)
    sound()
    batch.refresh_from_db()
    assert sorted(batch.event_ids) == ids and batch.mined_tx_hash == batch.tx_hashes[0]
    ctl.reorg(1, [(rival, 0), (rebuilt, 0)])  # fork B
    revenue_events_deliver(max_batches=1)
    sound()
    batch.refresh_from_db()
    assert batch.event_ids == ids[3:] and batch.mined_tx_hash == batch.tx_hashes[1]
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound, cycles=10)
    assert_delivered_exactly_once(context)
    assert distributed_total() == holder_total()
    rival_batch = DeliveryBatch.objects.get(foreign=True, status="confirmed")
    assert all(metadata(pk).batch_id == rival_batch.pk for pk in ids[:3])
    assert all(metadata(pk).batch_id == batch.pk for pk in ids[3:])


def test_an_id_paid_by_a_same_key_transaction_before_its_event_existed_is_never_given(on_anvil, settings):
    """Someone with the platform's key pays the id of the next revenue event before the
    event exists; the scan adopts it. Before, the next event was given that id and taken for
    paid by it (another amount: 10**14 wei for a share of several times that); now the scan
    moves the ids past it, and the events made later are each paid for themselves."""
    context = on_anvil.context
    w3 = context.w3
    ids = events_create(3)
    future = max(ids) + 1
    stream_id = RevenueEvent.objects.get(pk=ids[0]).stream_id
    max_fee, priority = suggest_fees(w3)
    ahead = build_delivery_tx(
        w3,
        contract_address=context.contract_address,
        signer_address=context.signer_address,
        items=[DeliveryItem(item_id=future, stream_id=stream_id, amount_wei=10**14)],
        nonce=w3.eth.get_transaction_count(context.signer.address, "pending"),
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        gas=300_000,
    )
    paid_ahead = send_signed(w3, sign_tx(context.signer, ahead))
    wait_for_receipt(w3, paid_ahead, timeout=30)
    revenue_events_deliver(max_batches=1)  # the foreign payment is adopted before the event exists
    later = events_create(2, prefix="later")
    assert min(later) > future
    drive(until=all_delivered, mine=on_anvil.mine, each=sound, cycles=10)
    assert DeliveryBatch.objects.get(foreign=True).status == "confirmed"
    assert not RevenueEvent.objects.filter(pk=future).exists()
    paid = payments_by_event(onchain(context)[0])
    for pk, amount in expected_wei(later).items():
        (log,) = paid[pk]
        assert log.amount == amount and metadata(pk).tx_hash == log.tx_hash != paid_ahead
    assert distributed_total() == holder_total()


class FaultyRpc:
    """A JSON-RPC proxy in front of a node that answers chosen requests with an error
    (what a hosted node's load balancer says when a backend lags: "header not found")."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import json
        import threading

        import requests

        self.fail: Any = lambda request: False
        self.failed = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                if not isinstance(request, list) and proxy.fail(request):
                    proxy.failed += 1
                    error = {"code": -32000, "message": "header not found"}
                    answer = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "error": error}).encode()
                else:
                    answer = requests.post(
                        upstream, data=body, headers={"Content-Type": "application/json"}, timeout=10
                    ).content
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_node_error_on_the_cursor_block_is_not_taken_for_a_reorg(on_anvil, settings):
    """The node answers the scan cursor's block lookup with an error: that says nothing
    about the chain. Before, any answer but a block was read as "the cursor block's hash
    changed": a reorg was reported, the logs rescanned, and, with the cursor at or below
    the final block, finality declared broken and every log since the deployment read
    again. Now the cycle stops on a transient error and the next one goes on."""
    ctl = on_anvil.ctl
    ids = events_create(5)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    cursor = ChainDeployment.objects.get(pk=on_anvil.context.deployment_id).scanned_block
    assert cursor is not None
    ctl.mine(80)  # the cursor block is final now
    proxy = FaultyRpc(ctl.uri)
    try:
        settings.WEB3_PROVIDER_URI = proxy.uri
        chain_context_reset()
        proxy.fail = lambda request: request["method"] == "eth_getBlockByNumber" and request["params"][0] == hex(cursor)
        result = revenue_events_deliver(max_batches=1)
        sound()
        assert proxy.failed >= 1
        assert result.counters.reorgs_detected == 0, result.as_dict()
        assert result.error_kind == "transient", result.as_dict()
        proxy.fail = lambda request: False
        result = revenue_events_deliver(max_batches=1)
        assert result.counters.reorgs_detected == 0 and not result.error, result.as_dict()
        assert_delivered_exactly_once(chain_context_get())
        assert all(metadata(pk).reorged_at is None for pk in ids)
    finally:
        settings.WEB3_PROVIDER_URI = ctl.uri
        chain_context_reset()
        proxy.close()


# --------------------------------------------------------------------------- abandoning a stuck batch


def abandon(batch: DeliveryBatch, reason: str = "stuck since the node restart") -> AbandonOutcome:
    return delivery_batch_abandon(batch_id=batch.pk, actor=StaffFactory(), reason=reason, via="api")


def nonce_used_elsewhere(context: ChainContext, nonce: int) -> str:
    """A 0-value self-transfer of the platform's key at ``nonce`` (not waited for)."""
    w3 = context.w3
    max_fee, priority = suggest_fees(w3)
    tx = build_self_transfer_tx(
        w3, signer_address=context.signer_address, nonce=nonce, max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
    )  # fmt: skip
    return send_signed(w3, sign_tx(context.signer, tx))


def refused(batch: DeliveryBatch, match: str) -> StaffAction:
    """The abandonment refused with what the chain showed; nothing changed but its audit row."""
    before = statuses()
    with pytest.raises(DeliveryBatchNotAbandonable, match=match):
        abandon(batch)
    assert DeliveryBatch.objects.get(pk=batch.pk).status == "submitted" and statuses() == before
    action = StaffAction.objects.filter(target_type="delivery_batch", target_id=batch.pk).latest("pk")
    assert action.outcome == "refused" and action.reason == "stuck since the node restart"
    assert action.from_state == action.to_state == "submitted" and action.detail
    return action


def test_a_batch_the_node_lost_while_fees_are_above_the_ceiling_is_abandoned_and_paid_once(
    on_anvil, settings, staff_client, django_capture_on_commit_callbacks
):
    """The bad day an operator could only leave in the database: the node dropped the batch's
    transaction and the base fee went above DELIVERY_MAX_FEE_PER_GAS_WEI (delivery paused,
    the batch `submitted` for ever). The chain shows no version mined or known, its nonce
    unused: staff abandon it, its events go back to pending, and are paid once, by a new
    batch at the same nonce (so the old signed bytes can never be mined)."""
    ids, batch = one_batch_pending(on_anvil, settings, events=4)
    ctl, w3 = on_anvil.ctl, on_anvil.context.w3
    (old,) = batch.tx_hashes
    ctl.drop_transaction(old)
    settings.DELIVERY_MAX_FEE_PER_GAS_WEI = batch.max_fee_per_gas * 2
    ctl.set_next_block_base_fee(batch.max_fee_per_gas * 3)
    ctl.mine(1)
    assert revenue_events_deliver(max_batches=1).paused == "fees_above_cap"
    assert DeliveryBatch.objects.get().status == "submitted" and statuses() == {"submitted": 4}

    with django_capture_on_commit_callbacks(execute=True):
        answer = staff_client.post(
            f"/api/admin/revenue/batches/{batch.pk}/abandon",
            {"reason": "dropped by the node, fees above the cap"},
            format="json",
        )
    assert answer.status_code == 200, answer.content
    assert answer.json() | {"detail": ""} == {
        "id": batch.pk, "status": "abandoned", "grounds": "tx_gone", "detail": "", "events_returned": 4
    }  # fmt: skip
    batch.refresh_from_db()
    assert batch.status == "abandoned" and "dropped by the node" in batch.last_error
    assert statuses() == {"pending": 4} and all(metadata(pk).retry_attempts == 0 for pk in ids)
    action = StaffAction.objects.get(target_type="delivery_batch", target_id=batch.pk)
    assert (action.action, action.outcome, action.from_state, action.to_state, action.via) == (
        "batch_abandon", "done", "submitted", "abandoned", "api"
    )  # fmt: skip
    assert action.reason == "dropped by the node, fees above the cap" and action.detail.startswith("tx_gone: ")
    assert action.actor_username and action.at
    assert alerts()[-1] == f"On-chain delivery: batch {batch.pk} abandoned by {action.actor_username}"

    settings.DELIVERY_MAX_FEE_PER_GAS_WEI = 500 * 10**9  # the operator raises the ceiling
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context)
    resent = DeliveryBatch.objects.exclude(pk=batch.pk).get()
    assert resent.nonce == batch.nonce and resent.status == "confirmed"
    assert DeliveryBatch.objects.get(pk=batch.pk).status == "abandoned"
    with pytest.raises(Exception, match="nonce"):  # its nonce is used: the old bytes are dead
        send_signed(w3, SignedTx(bytes(HexBytes(batch.signed_raw_tx)), old))


def test_an_abandoned_batch_mined_after_all_is_the_payment_of_its_events(on_anvil, settings):
    """Its signed bytes rebroadcast by someone else before its nonce was used: the version is
    mined after all. What it paid is paid, once: the scan records it as the batch's payment."""
    ids, batch = one_batch_pending(on_anvil, settings, events=3)
    old = abandoned_as_lost(on_anvil, batch, events=3)
    abandoned_bytes_mined(on_anvil, batch, old)  # a third party had the bytes
    assert all(metadata(pk).tx_hash == old for pk in ids)


def abandoned_as_lost(on_anvil, batch: DeliveryBatch, *, events: int) -> str:
    """The batch's transaction lost by the platform's node and abandoned by staff (`tx_gone`):
    its events pending again. Its hash."""
    (old,) = batch.tx_hashes
    on_anvil.ctl.drop_transaction(old)
    on_anvil.ctl.mine(1)
    assert abandon(batch).grounds == "tx_gone" and statuses() == {"pending": events}
    return old


def abandoned_bytes_mined(on_anvil, batch: DeliveryBatch, old: str) -> None:
    """Someone who kept the abandoned batch's signed bytes has them mined: delivery records
    them as the batch's payment, every event paid once."""
    send_signed(on_anvil.context.w3, SignedTx(bytes(HexBytes(batch.signed_raw_tx)), old))
    on_anvil.ctl.set_automine(True)
    on_anvil.ctl.mine(1)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context)
    batch.refresh_from_db()
    assert batch.status == "confirmed" and batch.mined_tx_hash == old


def test_an_abandoned_events_item_id_never_changes_to_a_dust_bundle(on_anvil, settings, clock):
    """Abandoned (`tx_gone`: the platform's node lost it; peers may still hold the bytes),
    a batch's events went back to pending and were priced again: worth less than
    DELIVERY_MIN_ITEM_WEI now (the minimum raised, or the price moved), they were carried and
    bundled with other dust of their streams: other on-chain ids. A builder then mining the
    abandoned bytes at that nonce paid them under their own ids; the bundles' batch was
    rebuilt without the bundles, whose other events went back to pending still bundled with
    the paid ones: every later cycle selected them first and failed (DeliveryRace), and
    delivery stopped for good. An event once signed as its own item stays its own item."""
    settings.DELIVERY_MIN_ITEM_WEI = 10**13
    settings.DELIVERY_DUST_MAX_AGE_SECONDS = 3600
    ids, batch = one_batch_pending(on_anvil, settings, events=2)
    old = abandoned_as_lost(on_anvil, batch, events=2)  # a peer still has the bytes
    settings.DELIVERY_MIN_ITEM_WEI = 10**18  # every share is dust now
    stream = RevenueEvent.objects.get(pk=ids[0]).stream_id
    (later,) = events_create(1, prefix="later", first_stream=stream, streams=1)  # dust of the same stream
    for _ in range(3):  # old enough to be paid as a bundle, had they been carried
        clock.advance(seconds=3601)
        revenue_events_deliver(max_batches=1)
    resent = DeliveryBatch.objects.exclude(pk=batch.pk).get(nonce=batch.nonce)
    assert sorted(int(item) for item in resent.item_ids) == ids  # the same on-chain ids
    bundled = {int(pk) for event_ids in DeliveryBundle.objects.values_list("event_ids", flat=True) for pk in event_ids}
    assert not bundled & set(ids)
    # A builder holding the abandoned bytes mines them at that nonce, not the new version.
    for tx_hash in resent.tx_hashes:
        on_anvil.ctl.drop_transaction(tx_hash)
    abandoned_bytes_mined(on_anvil, batch, old)
    assert metadata(later).status == DeliveryStatus.DELIVERED and metadata(later).bundle_id is not None


def test_a_batch_whose_nonce_another_transaction_used_is_abandoned_once_that_is_final(on_anvil, settings):
    _, batch = one_batch_pending(on_anvil, settings, events=3)
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.drop_transaction(batch.tx_hashes[0])
    nonce_used_elsewhere(context, batch.nonce)  # an operator's own transfer with the platform's key
    ctl.mine(1)
    assert "not final yet" in refused(batch, "not final yet").detail
    ctl.mine(70)  # anvil's `finalized` is 64 deep
    outcome = abandon(batch)
    assert (outcome.grounds, outcome.events_returned) == ("nonce_used", 3)
    assert DeliveryBatch.objects.get(pk=batch.pk).status == "abandoned" and statuses() == {"pending": 3}
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)
    assert DeliveryBatch.objects.get(pk=batch.pk).status == "abandoned"


def test_abandoning_is_refused_while_a_version_is_in_the_nodes_pool(on_anvil, settings):
    _, batch = one_batch_pending(on_anvil, settings, events=2)
    assert refused(batch, "in the node's pool").detail.startswith("pending: ")
    on_anvil.ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context)


def test_abandoning_is_refused_when_its_payment_landed(on_anvil, settings):
    """Mined, not yet seen by the worker (the database still says `submitted`, not mined):
    the chain says no. Abandoning it would have sent its events again."""
    _, batch = one_batch_pending(on_anvil, settings, events=3)
    on_anvil.ctl.mine(5)
    assert receipt_or_none(on_anvil.context.w3, batch.tx_hashes[0])["status"] == 1
    assert DeliveryBatch.objects.get().block_number is None
    assert refused(batch, "is mined in block").detail.startswith("mined: ")
    on_anvil.ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context)
    with pytest.raises(DeliveryBatchNotAbandonable, match="is confirmed, not in flight"):
        abandon(batch)  # and once the worker knows, the database alone says no
    assert all_delivered()


def test_abandoning_is_refused_when_a_same_nonce_replacement_signed_elsewhere_paid_its_items(on_anvil, settings):
    """Another holder of the key replaced the batch at its nonce with a transaction paying
    the same items, final: no version of the batch is mined, its nonce is used, but the
    reserve holds its items as paid. Abandoning would hand them to a new batch (refunded
    on-chain, but the events would be left to a batch that paid nothing): refused, and the
    worker's scan adopts the payment."""
    ids, batch = one_batch_pending(on_anvil, settings, events=3)
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.drop_transaction(batch.tx_hashes[0])
    send_signed(context.w3, signed_by_the_platform_key(context, ids, nonce=batch.nonce))
    ctl.mine(70)
    assert refused(batch, "as paid already").detail.startswith("paid: ")
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(context)


def test_chain_deploy_counts_an_abandoned_batch_in_flight_until_its_nonce_is_used_and_final(on_anvil, settings):
    """Abandoned with its nonce unused (`tx_gone`), a batch's signed bytes could still pay on
    the old reserve: a deployment then would pay its events again on the new one."""
    _, batch = one_batch_pending(on_anvil, settings, events=2)
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.drop_transaction(batch.tx_hashes[0])
    ctl.mine(1)
    assert abandon(batch).grounds == "tx_gone"
    with pytest.raises(CommandError, match="1 batch"):
        call_command("chain_deploy", "--dev", "--replace", stdout=io.StringIO())
    nonce_used_elsewhere(context, batch.nonce)  # then final: no version of it can be mined any more
    ctl.mine(70)
    ctl.set_automine(True)
    call_command("chain_deploy", "--dev", "--replace", stdout=io.StringIO())
    assert ChainDeployment.objects.get(active=True).pk != context.deployment_id
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(chain_context_get())


def dust_bundle_abandoned(on_anvil, settings, clock) -> tuple[list[int], DeliveryBatch, DeliveryBundle]:
    """Three dust events of one stream carried, bundled and sent as one item; that batch's
    transaction lost by the node and abandoned (automine off): the events pending again with
    their bundle. The events, the batch and the bundle."""
    settings.DELIVERY_MIN_ITEM_WEI = 10**13
    settings.DELIVERY_DUST_MAX_AGE_SECONDS = 3600
    settings.DELIVERY_STUCK_SECONDS = 3600
    dust = events_create(3, gross="0.01", streams=1, first_stream=5, spread=False)
    revenue_events_deliver(max_batches=1)
    clock.advance(seconds=3601)
    on_anvil.ctl.set_automine(False)
    revenue_events_deliver(max_batches=1)
    batch = DeliveryBatch.objects.get()
    (bundle,) = DeliveryBundle.objects.all()
    assert batch.event_ids == dust and [int(i) for i in batch.item_ids] == [2**64 + bundle.pk]
    on_anvil.ctl.drop_transaction(batch.tx_hashes[0])
    on_anvil.ctl.mine(1)
    assert abandon(batch).events_returned == 3
    return dust, batch, bundle


def test_an_abandoned_batchs_dust_bundle_is_sent_again_as_the_same_item(on_anvil, settings, clock):
    """Abandoned, a bundle's events go back to pending with their bundle: the next batch
    carries the same on-chain item (never a second bundle, which the reserve would pay again
    if the abandoned bytes were ever mined)."""
    _, batch, _ = dust_bundle_abandoned(on_anvil, settings, clock)
    ctl = on_anvil.ctl
    revenue_events_deliver(max_batches=1)
    again = DeliveryBatch.objects.exclude(pk=batch.pk).get()
    assert again.item_ids == batch.item_ids and again.nonce == batch.nonce and DeliveryBundle.objects.count() == 1
    ctl.set_automine(True)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert_delivered_exactly_once(on_anvil.context)


def test_a_bundle_one_of_whose_events_a_same_key_transaction_paid_is_still_sent(on_anvil, settings, clock):
    """A bundle waiting to be sent again (its batch abandoned), and a transaction of the
    platform's key it never signed pays one of its events on its own (adopted). The next
    batch counted that event with the bundle, its submit found one event fewer
    (DeliveryRace), and every later cycle failed the same way: delivery stopped for good.
    The bundle is sent as formed, with the events of it still waiting."""
    dust, _, bundle = dust_bundle_abandoned(on_anvil, settings, clock)
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.set_automine(True)
    nonce = context.w3.eth.get_transaction_count(context.signer.address, "pending")
    foreign = send_signed(context.w3, signed_by_the_platform_key(context, [dust[0]], nonce=nonce))
    ctl.mine(2)  # confirmed when the platform first sees it: adopted and delivered at once
    later = events_create(2, prefix="later")  # the rest of delivery must not wait behind them

    results = drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    assert not [result.error for result in results if result.error]
    assert metadata(dust[0]).tx_hash == foreign  # its payer's
    paid = delivery_support.payments_by_event(onchain(context)[0])
    bundle_log = [log for log in paid[dust[1]] if log.item_id == 2**64 + bundle.pk]
    assert len(bundle_log) == 1 and all(metadata(pk).tx_hash == bundle_log[0].tx_hash for pk in dust[1:])
    assert all(len(paid[pk]) == 1 for pk in [*dust[1:], *later])
    assert DeliveryBundle.objects.count() == 1


def _restore(backup: dict[str, Any]) -> None:
    """The database as the backup holds it (what `pg_restore` of a dump taken then gives):
    the rows written since are gone, the id sequences and the scan cursor are the backup's,
    the streams' totals too. The chain keeps what was paid meanwhile."""
    from django.db import connection

    RevenueEvent.objects.filter(pk__gt=backup["event"]).delete()
    DeliveryBatch.objects.filter(pk__gt=backup["batch"]).delete()
    ChainDeployment.objects.filter(pk=backup["deployment"][0]).update(
        scanned_block=backup["deployment"][1], scanned_block_hash=backup["deployment"][2]
    )
    for pk, collected, distributed in backup["streams"]:
        RevenueStream.objects.filter(pk=pk).update(collected=collected, distributed=distributed)
    with connection.cursor() as cursor:
        for model, last in ((RevenueEvent, backup["event"]), (DeliveryBatch, backup["batch"])):
            table = model._meta.db_table
            if connection.vendor == "postgresql":
                cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, last])
            else:
                cursor.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s", [last, table])


@pytest.mark.parametrize("first", ["chain_check", "cycle"])
def test_a_database_restored_behind_the_chain_pays_each_new_event_itself(on_anvil, settings, first):
    """A backup is taken, three more events are delivered, then the database is restored from
    the backup: the chain holds payments of ids the restored database will give again. Before,
    the new events took those ids (the sequences were the backup's) and were marked delivered
    by the lost events' payments, with the lost events' amounts, none of them paid; the alert
    blamed a leaked key. Now the ids the chain paid are never given again: `chain_check` (run
    by scripts/serve before any process) and the scan move the id sequences past them, and
    every new event is paid by a transaction sent for it, with its own amount."""
    context = on_anvil.context
    events_create(3, prefix="kept")
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    deployment = ChainDeployment.objects.get(pk=context.deployment_id)
    backup = {
        "event": RevenueEvent.objects.order_by("-pk").values_list("pk", flat=True)[0],
        "batch": DeliveryBatch.objects.order_by("-pk").values_list("pk", flat=True)[0],
        "deployment": (deployment.pk, deployment.scanned_block, deployment.scanned_block_hash),
        "streams": list(RevenueStream.objects.values_list("pk", "collected", "distributed")),
    }
    lost = events_create(3, prefix="lost")
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    _restore(backup)
    if first == "chain_check":
        out = io.StringIO()
        call_command("chain_check", stdout=out)
        assert "behind the chain" in out.getvalue()
    else:
        revenue_events_deliver(max_batches=1)  # its scan finds the payments it does not know
    new = events_create(3, gross="7.00", prefix="after")
    assert not set(new) & set(lost)
    drive(until=all_delivered, mine=on_anvil.mine, each=sound)
    logs, _ = onchain(context)
    paid = payments_by_event(logs)
    wanted = expected_wei(new)
    for pk in new:
        (log,) = paid[pk]
        assert log.amount == wanted[pk], (pk, log)
        assert metadata(pk).tx_hash == log.tx_hash
    assert distributed_total() == holder_total()
