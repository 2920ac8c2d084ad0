"""Delivery against a real node (the project-local anvil): volume, node outages, dropped
and underpriced transactions, deep reorgs, crashes, a duplicate sender, deployment."""

from __future__ import annotations

import io
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

import revenue.delivery.broadcast as broadcast
from revenue.chain.client import (
    DeliveryItem,
    build_delivery_tx,
    classify_error,
    connect,
    dev_signer_fund,
    explain_failed_receipt,
    receipt_or_none,
    send_signed,
    sign_tx,
    suggest_fees,
)
from revenue.chain.devnode import AnvilRPC
from revenue.chain.runtime import ChainContext, chain_context_get, chain_context_reset
from revenue.delivery import revenue_events_deliver
from revenue.models import ChainDeployment, DeliveryBatch, DeliveryHeartbeat, RevenueEvent
from tests.chain.conftest import anvil, anvil_ctl, anvil_factory, anvil_node  # noqa: F401  (fixtures)
from tests.revenue.delivery_support import (
    all_delivered,
    assert_delivered_exactly_once,
    distributed_total,
    drive,
    events_create,
    expected_wei,
    holder_total,
    statuses,
)

pytestmark = [pytest.mark.anvil, pytest.mark.django_db]


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


def metadata(pk: int) -> dict:
    return RevenueEvent.objects.get(pk=pk).metadata


def test_a_thousand_events_are_delivered_exactly_once(on_anvil, settings, capsys):
    settings.DELIVERY_BATCH_SIZE = 200
    events_create(1000)
    started = time.monotonic()
    results = drive(until=all_delivered, mine=on_anvil.mine, max_batches=5)
    elapsed = time.monotonic() - started
    assert_delivered_exactly_once(on_anvil.context)
    batches = list(DeliveryBatch.objects.order_by("first_sequence"))
    assert [(b.first_sequence, b.size, b.status) for b in batches] == [(200 * i, 200, "confirmed") for i in range(5)]
    assert sum(r.counters.batches_sent for r in results) == 5
    assert distributed_total() == holder_total()
    with capsys.disabled():
        print(f"\n[delivery] 1,000 events on anvil: {len(results)} cycles, 5 batches, {elapsed:.2f} s")


def test_node_down_mid_run_then_back_with_its_state(settings, anvil_factory, eth_market, tmp_path, monkeypatch):  # noqa: F811
    node = anvil_factory(state_path=tmp_path / "anvil-state.json")
    context = deploy(settings, node.uri, tmp_path / "chain-signer.key")
    settings.DELIVERY_BATCH_SIZE = 100
    settings.DELIVERY_RETRY_BASE_SECONDS = 0  # re-drive as soon as the node is back
    events_create(500)
    real_send, real_build = broadcast.send_signed, broadcast.build_delivery_tx
    sends = {"count": 0}

    def send_node_dies_at_third(*args, **kwargs):
        sends["count"] += 1
        if sends["count"] == 3:
            node.stop()  # dies after batch 3 was committed, before its broadcast
        return real_send(*args, **kwargs)

    monkeypatch.setattr(broadcast, "send_signed", send_node_dies_at_third)
    result = revenue_events_deliver(max_batches=5)
    assert result.error_kind == "transient" and result.counters.batches_sent == 3
    # batch 2's block gave batch 1 its second confirmation; batch 3 never reached the node
    before = statuses()
    assert before == {"delivered": 100, "submitted": 100, "failed": 100, "pending": 200}
    third = DeliveryBatch.objects.order_by("first_sequence")[2]
    for pk in third.event_ids:
        data = metadata(pk)
        assert data["retryAttempts"] == 1 and "unavailable" in data["lastError"] and data["nextRetryAt"]
    # while it is down: nothing changes, the heartbeat says so
    assert revenue_events_deliver(max_batches=5).error_kind == "transient"
    assert statuses() == before
    assert DeliveryHeartbeat.objects.get().connected is False

    monkeypatch.setattr(broadcast, "send_signed", real_send)
    node.start()  # same port, chain from --state (batch 3 never reached it)
    builds = {"count": 0}

    def build_node_dies_once(*args, **kwargs):
        builds["count"] += 1
        if builds["count"] == 1:
            node.stop()  # down again while the next batch is being built
        return real_build(*args, **kwargs)

    monkeypatch.setattr(broadcast, "build_delivery_tx", build_node_dies_once)
    drive(until=lambda: builds["count"] >= 1, mine=node.evm_mine, max_batches=5, cycles=10)
    assert not node.running
    # batch 3 was rebroadcast and confirmed; the next 100 failed while their batch was built
    assert all(metadata(pk)["onChainDeliveryStatus"] == "delivered" for pk in third.event_ids)
    failed_at_build = [pk for pk, m in RevenueEvent.objects.values_list("pk", "metadata") if m.get("lastError")]
    assert len(failed_at_build) == 100 and not set(failed_at_build) & set(third.event_ids)
    assert all(metadata(pk)["onChainDeliveryStatus"] == "failed" for pk in failed_at_build)
    assert DeliveryBatch.objects.count() == 3  # nothing was persisted for them

    monkeypatch.setattr(broadcast, "build_delivery_tx", real_build)
    node.start()
    drive(until=all_delivered, mine=node.evm_mine, max_batches=5)
    assert_delivered_exactly_once(chain_context_get())
    assert DeliveryBatch.objects.filter(status="confirmed").count() == DeliveryBatch.objects.count() == 5
    attempts = sorted(metadata(pk)["retryAttempts"] for pk in RevenueEvent.objects.values_list("pk", flat=True))
    assert attempts == [0] * 300 + [1] * 200
    assert context.contract_address == chain_context_get().contract_address


def test_a_dropped_transaction_is_rebroadcast_at_the_same_nonce(on_anvil, settings):
    settings.DELIVERY_STUCK_SECONDS = 3600
    ids = events_create(5)
    ctl = on_anvil.ctl
    ctl.set_automine(False)
    revenue_events_deliver(max_batches=5)
    batch = DeliveryBatch.objects.get()
    (tx_hash,) = batch.tx_hashes
    assert tx_hash in ctl.pending_hashes()
    ctl.drop_transaction(tx_hash)
    ctl.mine(1)
    assert tx_hash not in ctl.pending_hashes() and receipt_or_none(on_anvil.context.w3, tx_hash) is None

    result = revenue_events_deliver(max_batches=5)
    assert result.counters.rebroadcasts == 1 and result.counters.batches_sent == 0
    assert tx_hash in ctl.pending_hashes()
    drive(until=all_delivered, mine=on_anvil.mine)
    batch.refresh_from_db()
    assert batch.tx_hashes == [tx_hash] and batch.mined_tx_hash == tx_hash
    assert on_anvil.context.w3.eth.get_transaction(tx_hash)["nonce"] == batch.nonce
    assert all(metadata(pk)["txHash"] == tx_hash for pk in ids)
    assert_delivered_exactly_once(on_anvil.context)


@pytest.mark.parametrize("why", ["underpriced", "stuck"])
def test_a_pending_transaction_is_replaced_at_the_same_nonce_with_higher_fees(on_anvil, settings, why):
    settings.DELIVERY_STUCK_SECONDS = 3600
    ids = events_create(3)
    ctl, w3 = on_anvil.ctl, on_anvil.context.w3
    ctl.set_automine(False)
    revenue_events_deliver(max_batches=5)
    batch = DeliveryBatch.objects.get()
    (first,) = batch.tx_hashes
    if why == "underpriced":
        ctl.set_next_block_base_fee(batch.max_fee_per_gas * 3)  # it can no longer be included
    else:
        settings.DELIVERY_STUCK_SECONDS = 0  # it has been pending "too long"

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
    drive(until=all_delivered, mine=on_anvil.mine)
    replaced.refresh_from_db()
    assert replaced.mined_tx_hash == second and receipt_or_none(w3, first) is None
    assert all(metadata(pk)["txHash"] == second for pk in ids)
    assert_delivered_exactly_once(on_anvil.context)


@pytest.mark.parametrize("how", ["rollback", "reorg"])
def test_a_reorg_deeper_than_the_confirmations_still_delivers_once(on_anvil, settings, how):
    ids = events_create(10)
    ctl, w3 = on_anvil.ctl, on_anvil.context.w3
    ctl.mine(5)  # keep the reorg away from the contract's own deployment
    drive(until=all_delivered, mine=on_anvil.mine)
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
    assert result.counters.reorged_batches == 1
    assert statuses() == {"submitted": 10} and distributed_total() == 0  # taken back, not yet re-confirmed
    drive(until=all_delivered, mine=on_anvil.mine)
    batch.refresh_from_db()
    assert batch.status == "confirmed" and DeliveryBatch.objects.count() == 1
    assert all(metadata(pk)["reorgedAt"] for pk in ids)
    assert_delivered_exactly_once(on_anvil.context)


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
    results = drive(until=all_delivered, mine=on_anvil.mine)
    assert sum(r.counters.rebroadcasts for r in results) == (1 if when == "before_broadcast" else 0)
    assert DeliveryBatch.objects.count() == 1
    assert_delivered_exactly_once(on_anvil.context)


def _duplicate_of_pending(context: ChainContext, ids: list[int], *, first_sequence: int) -> str:
    """Another sender with the platform's key delivers the same events."""
    w3 = context.w3
    amounts = expected_wei(ids)
    streams = dict(RevenueEvent.objects.filter(pk__in=ids).values_list("pk", "stream_id"))
    items = [DeliveryItem(event_id=pk, stream_id=streams[pk], amount_wei=amounts[pk]) for pk in ids]
    max_fee, priority = suggest_fees(w3)
    tx = build_delivery_tx(
        w3,
        contract_address=context.contract_address,
        signer_address=context.signer_address,
        first_sequence=first_sequence,
        items=items,
        nonce=w3.eth.get_transaction_count(context.signer.address, "pending"),
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
    )
    return send_signed(w3, sign_tx(context.signer, tx))


def test_resending_an_already_delivered_batch_is_refused_on_chain_and_reconciled(on_anvil):
    ids = events_create(3)
    ctl, context = on_anvil.ctl, on_anvil.context
    ctl.set_automine(False)
    duplicate = _duplicate_of_pending(context, ids, first_sequence=0)  # pending, nonce n
    revenue_events_deliver(max_batches=5)  # the platform's own batch: sequence 0, nonce n + 1
    batch = DeliveryBatch.objects.get()
    assert batch.first_sequence == 0 and batch.tx_hashes[0] != duplicate
    ctl.evm_mine()  # the duplicate first, then ours
    ours = receipt_or_none(context.w3, batch.tx_hashes[0])
    assert ours is not None and ours["status"] == 0  # refused on-chain
    assert classify_error(explain_failed_receipt(context.w3, ours)) == "already_delivered"

    results = drive(until=all_delivered, mine=on_anvil.mine)
    assert sum(r.counters.events_failed for r in results) == 0
    for pk in ids:
        data = metadata(pk)
        assert data["txHash"] == duplicate and data["retryAttempts"] == 0 and "lastError" not in data
    batch.refresh_from_db()
    assert batch.status == "confirmed" and batch.mined_tx_hash == duplicate
    assert_delivered_exactly_once(context)


def test_a_delivery_by_another_sender_is_adopted_not_paid_again(on_anvil):
    ids = events_create(4)
    context = on_anvil.context
    duplicate = _duplicate_of_pending(context, ids[:2], first_sequence=0)  # mined at once (automine)
    results = drive(until=all_delivered, mine=on_anvil.mine)
    assert sum(r.counters.adopted_batches for r in results) == 1
    adopted = DeliveryBatch.objects.get(foreign=True)
    assert adopted.event_ids == ids[:2] and adopted.tx_hashes == [duplicate] and adopted.status == "confirmed"
    assert DeliveryBatch.objects.get(foreign=False).event_ids == ids[2:]
    assert_delivered_exactly_once(context)


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

    call_command("chain_deploy", "--dev", stdout=io.StringIO())
    first.refresh_from_db()
    second = ChainDeployment.objects.get(active=True)
    assert not first.active and second.pk != first.pk and second.signer_address != first.signer_address
    assert chain_context_get().contract_address == second.contract_address  # workers follow the new one


def test_chain_deploy_refuses_to_strand_batches_in_flight(on_anvil, settings):
    events_create(2)
    on_anvil.ctl.set_automine(False)
    revenue_events_deliver(max_batches=1)
    with pytest.raises(CommandError, match="in flight"):
        call_command("chain_deploy", "--dev", stdout=io.StringIO())
    on_anvil.ctl.set_automine(True)
    call_command("chain_deploy", "--dev", "--force", stdout=io.StringIO())
    assert DeliveryBatch.objects.get().status == "superseded" and statuses() == {"pending": 2}


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
