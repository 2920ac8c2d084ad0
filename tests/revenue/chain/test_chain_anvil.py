"""Delivery against the project-local anvil: gas, mempool faults, reorgs, node down."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from revenue.chain.client import (
    ChainUnavailable,
    DeliveryItem,
    SignedTx,
    build_delivery_tx,
    bump_fees,
    chain_items_paid,
    chain_status,
    classify_error,
    confirmations,
    connect,
    delivered_logs,
    deploy_reserve,
    dev_signer_fund,
    finalized_block_number,
    node_chain_id,
    payment_logs,
    receipt_or_none,
    reserve_contract,
    send_signed,
    sign_tx,
    suggest_fees,
    wait_for_receipt,
)
from revenue.chain.devnode import AnvilNode, AnvilRPC
from tests.waiting import wait_until

from .conftest import FUNDING_WEI, REVERT_ERRORS, Deployed

pytestmark = pytest.mark.anvil

GAS_RATIO_LIMIT = 0.10


def signed_delivery(
    d: Deployed,
    items: list[DeliveryItem],
    *,
    nonce: int | None = None,
    fees: tuple[int, int] | None = None,
    gas: int | None = None,
) -> tuple[dict[str, Any], SignedTx]:
    w3 = d.w3
    max_fee, priority = fees or suggest_fees(w3)
    tx = build_delivery_tx(
        w3,
        contract_address=d.address,
        signer_address=d.signer.address,
        items=items,
        nonce=w3.eth.get_transaction_count(d.signer.address, "pending") if nonce is None else nonce,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        gas=gas,
    )
    return tx, sign_tx(d.signer, tx)


def deliver(d: Deployed, items: list[DeliveryItem], **kwargs: Any) -> Any:
    _, signed = signed_delivery(d, items, **kwargs)
    return wait_for_receipt(d.w3, send_signed(d.w3, signed), timeout=30)


def mined_receipt(w3: Web3, tx_hash: str) -> Any:
    return wait_until(lambda: receipt_or_none(w3, tx_hash), what=f"the receipt of {tx_hash}", timeout=30)


def realistic_items(first_event_id: int, count: int) -> list[DeliveryItem]:
    # amounts of a few dollars at ~3000 USD/ETH (7-8 significant bytes), ids of a busy platform
    return [
        DeliveryItem(
            item_id=first_event_id + i,
            stream_id=i % 10,
            amount_wei=1_234_567_890_123_456 + 987_654_321 * i,
        )
        for i in range(count)
    ]


def test_dev_signer_is_fresh_and_funded_via_set_balance(anvil_w3: Web3) -> None:
    account = dev_signer_fund(anvil_w3, amount_wei=FUNDING_WEI)
    assert account.address not in anvil_w3.eth.accounts
    assert anvil_w3.eth.get_balance(account.address) == FUNDING_WEI
    assert anvil_w3.eth.get_transaction_count(account.address) == 0
    status = chain_status(anvil_w3, signer_address=account.address)
    assert status["connected"] and status["chain_id"] == 31337
    assert status["signer_balance_wei"] == FUNDING_WEI
    assert node_chain_id(anvil_w3) == 31337
    head = anvil_w3.eth.block_number
    assert finalized_block_number(anvil_w3) == max(0, head - 64)  # anvil's `finalized`: 64 blocks deep


def test_gas_per_event_in_a_batch_of_200_vs_single_event(
    anvil_reserve: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    d = anvil_reserve
    # cold contract: the first delivery pays for creating the counters and a bitmap word
    first_single = deliver(d, realistic_items(10_000, 1))["gasUsed"]
    # warm every stream once, then measure in steady state (the normal case in production:
    # consecutive event ids, so a word of the bitmap already holds earlier ids)
    assert deliver(d, realistic_items(10_001, 10))["status"] == 1
    singles = []
    for k in range(3):
        receipt = deliver(d, realistic_items(10_011 + k, 1))
        assert receipt["status"] == 1
        singles.append(receipt["gasUsed"])
    single = statistics.median(singles)
    batch_receipt = deliver(d, realistic_items(10_014, 200))  # into the next bitmap word too
    assert batch_receipt["status"] == 1 and len(batch_receipt["logs"]) == 200
    batch = batch_receipt["gasUsed"]
    per_event = batch / 200
    marginal = (batch - single) / 199
    ratio = per_event / single
    # the same 200 items again: every one refused (and refunded), none paid twice
    resent = deliver(d, realistic_items(10_014, 200), gas=int(batch * 1.25))
    assert resent["status"] == 1 and chain_items_paid(d.w3, d.address) == 214
    refused = payment_logs(d.w3, d.address, resent["blockNumber"], resent["blockNumber"])
    assert len(refused) == 200 and not any(log.paid for log in refused)
    with capsys.disabled():
        print(
            f"\n[gas] single-event delivery tx: {single} (cold contract: {first_single}); "
            f"batch of 200: {batch} -> {per_event:.1f} per event, marginal {marginal:.1f}; "
            f"per-event / single = {ratio:.4f} (limit {GAS_RATIO_LIMIT}); "
            f"the same 200 resent (all refused, refunded): {resent['gasUsed']}"
        )
    assert ratio <= GAS_RATIO_LIMIT, f"batched gas per event {per_event:.0f} vs single-event tx {single}"


def test_dropped_tx_is_rebroadcast_at_the_same_nonce(anvil_reserve: Deployed, anvil_ctl: AnvilRPC) -> None:
    d = anvil_reserve
    w3 = d.w3
    anvil_ctl.set_automine(False)
    items = realistic_items(1, 3)
    nonce = w3.eth.get_transaction_count(d.signer.address)
    tx, signed = signed_delivery(d, items, nonce=nonce)
    assert send_signed(w3, signed) == signed.tx_hash
    assert signed.tx_hash in anvil_ctl.pending_hashes()
    # re-broadcasting the same bytes while pending is harmless
    assert send_signed(w3, signed) == signed.tx_hash

    anvil_ctl.drop_transaction(signed.tx_hash)
    assert signed.tx_hash not in anvil_ctl.pending_hashes()
    anvil_ctl.mine(1)
    assert receipt_or_none(w3, signed.tx_hash) is None
    assert chain_items_paid(w3, d.address) == 0
    assert w3.eth.get_transaction_count(d.signer.address, "pending") == nonce

    # the service still has the signed bytes: same nonce, same hash
    assert send_signed(w3, signed) == signed.tx_hash
    anvil_ctl.mine(1)
    receipt = receipt_or_none(w3, signed.tx_hash)
    assert receipt is not None and receipt["status"] == 1
    assert w3.eth.get_transaction(signed.tx_hash)["nonce"] == nonce == tx["nonce"]
    assert chain_items_paid(w3, d.address) == 3
    logs = delivered_logs(w3, d.address, 0, "latest")
    assert [(log.item_id, log.tx_hash) for log in logs] == [(item.item_id, signed.tx_hash) for item in items]
    # and a mined tx re-broadcast once more is still idempotent ("nonce too low" + our receipt)
    assert send_signed(w3, signed) == signed.tx_hash


def _bump_until(old: tuple[int, int], target_max_fee: int) -> tuple[int, int]:
    max_fee, priority = bump_fees(*old)
    while max_fee < target_max_fee:
        max_fee, priority = bump_fees(max_fee, priority)
    return max_fee, priority


def test_underpriced_pending_tx_is_replaced_by_a_fee_bump(anvil_reserve: Deployed, anvil_ctl: AnvilRPC) -> None:
    d = anvil_reserve
    w3 = d.w3
    anvil_ctl.set_automine(False)
    items = realistic_items(500, 2)
    nonce = w3.eth.get_transaction_count(d.signer.address)
    old_fees = suggest_fees(w3)
    tx1, signed1 = signed_delivery(d, items, nonce=nonce, fees=old_fees)
    send_signed(w3, signed1)

    # the base fee jumps above what tx1 offers: tx1 cannot be included any more
    anvil_ctl.set_next_block_base_fee(old_fees[0] * 3)
    pending_base = w3.eth.get_block("pending")["baseFeePerGas"]
    assert pending_base > tx1["maxFeePerGas"]
    new_fees = _bump_until(old_fees, suggest_fees(w3)[0])
    assert new_fees[0] * 10 >= old_fees[0] * 11 and new_fees[1] * 10 >= old_fees[1] * 11
    assert new_fees[0] > pending_base

    tx2, signed2 = signed_delivery(d, items, nonce=nonce, fees=new_fees, gas=tx1["gas"])
    assert tx2["nonce"] == tx1["nonce"] and signed2.tx_hash != signed1.tx_hash
    send_signed(w3, signed2)
    pending = anvil_ctl.pending_hashes()
    assert signed2.tx_hash in pending and signed1.tx_hash not in pending  # replaced, not queued

    anvil_ctl.evm_mine()
    assert receipt_or_none(w3, signed1.tx_hash) is None
    receipt = receipt_or_none(w3, signed2.tx_hash)
    assert receipt is not None and receipt["status"] == 1
    assert receipt["effectiveGasPrice"] >= pending_base
    assert chain_items_paid(w3, d.address) == 2
    assert {log.tx_hash for log in delivered_logs(w3, d.address, 0, "latest")} == {signed2.tx_hash}


def test_underpriced_tx_stalls_until_rebroadcast_with_bumped_fees(anvil_reserve: Deployed, anvil_ctl: AnvilRPC) -> None:
    d = anvil_reserve
    w3 = d.w3
    anvil_ctl.set_automine(False)
    items = realistic_items(700, 1)
    nonce = w3.eth.get_transaction_count(d.signer.address)
    old_fees = suggest_fees(w3)
    tx1, signed1 = signed_delivery(d, items, nonce=nonce, fees=old_fees)
    send_signed(w3, signed1)
    anvil_ctl.set_next_block_base_fee(old_fees[0] * 2)
    anvil_ctl.evm_mine()
    assert receipt_or_none(w3, signed1.tx_hash) is None  # priced out of the block
    assert chain_items_paid(w3, d.address) == 0
    assert w3.eth.get_transaction_count(d.signer.address) == nonce

    new_fees = _bump_until(old_fees, suggest_fees(w3)[0])
    _, signed2 = signed_delivery(d, items, nonce=nonce, fees=new_fees, gas=tx1["gas"])
    send_signed(w3, signed2)
    anvil_ctl.evm_mine()
    receipt = receipt_or_none(w3, signed2.tx_hash)
    assert receipt is not None and receipt["status"] == 1
    assert receipt_or_none(w3, signed1.tx_hash) is None
    assert chain_items_paid(w3, d.address) == 1


@pytest.mark.parametrize("how", ["rollback", "reorg"])
def test_reorg_or_rollback_removes_the_receipt(anvil_reserve: Deployed, anvil_ctl: AnvilRPC, how: str) -> None:
    d = anvil_reserve
    w3 = d.w3
    items = realistic_items(900, 2)
    _, signed = signed_delivery(d, items)
    send_signed(w3, signed)
    # automine answers the send before the block is sealed: wait for the receipt
    receipt = mined_receipt(w3, signed.tx_hash)
    assert receipt["status"] == 1
    anvil_ctl.mine(2)
    assert confirmations(w3, receipt) == 3
    head = w3.eth.block_number

    if how == "rollback":
        anvil_ctl.rollback(3)
        assert w3.eth.block_number == head - 3
    else:
        anvil_ctl.reorg(3)
        assert w3.eth.block_number == head  # same height, other blocks
        assert w3.eth.get_block(receipt["blockNumber"])["hash"] != receipt["blockHash"]

    assert receipt_or_none(w3, signed.tx_hash) is None
    assert confirmations(w3, receipt) == 0
    assert chain_items_paid(w3, d.address) == 0
    assert delivered_logs(w3, d.address, 0, "latest") == []

    # recovery: the same signed bytes are valid again (the nonce was rolled back too)
    assert send_signed(w3, signed) == signed.tx_hash
    # anvil may hand a reorged-out tx back to its pool; mining can lag under load.
    anvil_ctl.mine(1)
    assert mined_receipt(w3, signed.tx_hash)["status"] == 1
    assert chain_items_paid(w3, d.address) == 2


def test_a_paused_reserve_and_a_revoked_signer_are_operator_faults(anvil_reserve: Deployed) -> None:
    d = anvil_reserve
    items = realistic_items(40, 2)
    contract = reserve_contract(d.w3, d.address)
    fees = suggest_fees(d.w3)

    def owner_call(function: str, *args: Any) -> None:
        tx = contract.get_function_by_name(function)(*args).build_transaction(
            {
                "from": d.signer.address,
                "nonce": d.w3.eth.get_transaction_count(d.signer.address, "pending"),
                "maxFeePerGas": fees[0],
                "maxPriorityFeePerGas": fees[1],
            }
        )
        assert wait_for_receipt(d.w3, send_signed(d.w3, sign_tx(d.signer, tx)), timeout=30)["status"] == 1

    owner_call("set_paused", True)
    with pytest.raises(REVERT_ERRORS) as info:
        signed_delivery(d, items)  # gas estimation simulates the call
    assert classify_error(info.value) == "operator"
    owner_call("set_paused", False)
    owner_call("set_signer", d.signer.address, False)
    with pytest.raises(REVERT_ERRORS) as info:
        signed_delivery(d, items)
    assert classify_error(info.value) == "operator"
    owner_call("set_signer", d.signer.address, True)
    assert deliver(d, items)["status"] == 1
    assert chain_items_paid(d.w3, d.address) == 2


def test_node_down_then_restarted_with_its_state(anvil_factory: Callable[..., AnvilNode], tmp_path: Path) -> None:
    node = anvil_factory(state_path=tmp_path / "anvil-state.json")
    w3 = connect(provider_uri=node.uri, timeout=2)
    d = Deployed(w3)
    first = deliver(d, realistic_items(1, 4))
    assert first["status"] == 1

    node.stop()
    assert (tmp_path / "anvil-state.json").stat().st_size > 0
    status = chain_status(w3, contract_address=d.address, signer_address=d.signer.address)
    assert status["connected"] is False and status["error"]
    with pytest.raises(ChainUnavailable) as info:
        chain_items_paid(w3, d.address)
    assert classify_error(info.value) == "transient"
    # With nonce, fees and gas given, a transaction is built and signed without the node
    # (the chain id is cached per connection); only sending needs it.
    _, offline = signed_delivery(d, realistic_items(5, 1), nonce=2, fees=(10**10, 10**9), gas=200_000)
    with pytest.raises(ChainUnavailable):
        send_signed(w3, offline)
    with pytest.raises(ChainUnavailable) as info:
        send_signed(
            w3,
            sign_tx(
                d.signer,
                {
                    "type": 2,
                    "chainId": 31337,
                    "nonce": 2,
                    "to": d.address,
                    "value": 0,
                    "data": "0x",
                    "gas": 50_000,
                    "maxFeePerGas": 10**10,
                    "maxPriorityFeePerGas": 10**9,
                },
            ),
        )
    assert classify_error(info.value) == "transient"

    node.start()  # same port, chain loaded from --state
    status = chain_status(w3, contract_address=d.address, signer_address=d.signer.address)
    assert status["connected"] is True and status["items_paid"] == 4
    again = receipt_or_none(w3, first["transactionHash"].to_0x_hex())
    assert again is not None and again["blockHash"] == first["blockHash"]
    assert [log.item_id for log in delivered_logs(w3, d.address, 0, "latest")] == [1, 2, 3, 4]
    assert deliver(d, realistic_items(5, 1))["status"] == 1
    assert chain_items_paid(w3, d.address) == 5


def test_control_helpers(anvil_w3: Web3, anvil_ctl: AnvilRPC) -> None:
    w3 = anvil_w3
    start = w3.eth.block_number
    snap = anvil_ctl.snapshot()
    anvil_ctl.mine(3)
    assert w3.eth.block_number == start + 3
    assert anvil_ctl.revert(snap)
    assert w3.eth.block_number == start

    anvil_ctl.set_block_timestamp_interval(100)
    anvil_ctl.mine(1)
    t1 = w3.eth.get_block("latest")["timestamp"]
    anvil_ctl.evm_mine()
    t2 = w3.eth.get_block("latest")["timestamp"]
    assert t2 - t1 == 100
    anvil_ctl.remove_block_timestamp_interval()

    anvil_ctl.set_automine(False)
    assert anvil_ctl.automine() is False
    account = dev_signer_fund(w3, amount_wei=10**18)
    anvil_ctl.set_balance(account.address, 5)
    assert w3.eth.get_balance(account.address) == 5
    anvil_ctl.set_automine(True)
    assert anvil_ctl.automine() is True

    signer = dev_signer_fund(w3, amount_wei=FUNDING_WEI)
    address = deploy_reserve(w3, signer=signer)
    assert reserve_contract(w3, address).functions.signers(signer.address).call() is True
