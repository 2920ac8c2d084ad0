"""HolderReserve on the in-process eth-tester chain (py-evm)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from revenue.chain.artifacts import SOURCE_PATH
from revenue.chain.client import (
    DeliveryItem,
    build_delivery_tx,
    chain_next_sequence,
    classify_error,
    delivered_logs,
    dev_signer_fund,
    explain_failed_receipt,
    reserve_contract,
    sign_and_send,
    suggest_fees,
    wait_for_receipt,
)
from revenue.chain.compile import compile_source
from revenue.chain.errors import error_message

from .conftest import REVERT_ERRORS, Deployed


def deliver(
    d: Deployed, first_sequence: int, items: list[DeliveryItem], *, gas: int | None = None, **overrides: Any
) -> Any:
    """Build (estimating gas unless given), sign, send, wait; returns the receipt."""
    w3 = d.w3
    max_fee, priority = suggest_fees(w3)
    tx = build_delivery_tx(
        w3,
        contract_address=d.address,
        signer_address=d.signer.address,
        first_sequence=first_sequence,
        items=items,
        nonce=w3.eth.get_transaction_count(d.signer.address, "pending"),
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        gas=gas,
    )
    tx.update(overrides)
    return wait_for_receipt(w3, sign_and_send(w3, signer=d.signer, tx=tx))


def revert_of(w3: Web3, tx: dict[str, Any]) -> BaseException:
    """The exception the node raises when simulating ``tx``."""
    call = {k: tx[k] for k in ("from", "to", "value", "data") if k in tx}
    with pytest.raises(REVERT_ERRORS) as info:
        w3.eth.call(call)  # type: ignore[arg-type]
    return info.value


def raw_deliver_call(d: Deployed, args: list[Any], value: int, sender: str | None = None) -> dict[str, Any]:
    contract = reserve_contract(d.w3, d.address)
    return {
        "from": sender or d.signer.address,
        "to": d.address,
        "value": value,
        "data": contract.encode_abi("deliver", args=args),
    }


def snapshot(d: Deployed) -> dict[str, Any]:
    c = reserve_contract(d.w3, d.address).functions
    return {
        "next_sequence": c.next_sequence().call(),
        "total_received": c.total_received().call(),
        "stream_totals": [c.stream_totals(i).call() for i in range(10)],
        "balance": d.w3.eth.get_balance(d.address),
    }


def test_deploy_records_signer_and_starts_empty(tester_reserve: Deployed) -> None:
    d = tester_reserve
    c = reserve_contract(d.w3, d.address).functions
    assert c.signer().call() == d.signer.address
    assert snapshot(d) == {"next_sequence": 0, "total_received": 0, "stream_totals": [0] * 10, "balance": 0}
    # what is on chain is the runtime code of the committed source
    runtime = compile_source(SOURCE_PATH.read_text(encoding="utf-8"))["bytecode_runtime"]
    assert d.w3.eth.get_code(d.address).to_0x_hex() == runtime


def test_batch_delivery_totals_and_logs(tester_reserve: Deployed) -> None:
    d = tester_reserve
    items = [
        DeliveryItem(event_id=1001, stream_id=0, amount_wei=100),
        DeliveryItem(event_id=1002, stream_id=3, amount_wei=250),
        DeliveryItem(event_id=1003, stream_id=0, amount_wei=7),
        DeliveryItem(event_id=1004, stream_id=9, amount_wei=0),
        DeliveryItem(event_id=2**256 - 1, stream_id=9, amount_wei=11),
    ]
    receipt = deliver(d, 0, items)
    assert receipt["status"] == 1
    state = snapshot(d)
    assert state["next_sequence"] == 5
    assert state["total_received"] == 368 == state["balance"]
    expected = [0] * 10
    expected[0], expected[3], expected[9] = 107, 250, 11
    assert state["stream_totals"] == expected

    logs = delivered_logs(d.w3, d.address, 0, "latest")
    assert [(log.sequence, log.event_id, log.stream_id, log.amount) for log in logs] == [
        (i, item.event_id, item.stream_id, item.amount_wei) for i, item in enumerate(items)
    ]
    tx_hash = receipt["transactionHash"].to_0x_hex()
    assert {(log.tx_hash, log.block_number) for log in logs} == {(tx_hash, receipt["blockNumber"])}
    assert len(receipt["logs"]) == len(items)

    # the next batch continues the sequence and accumulates
    second = [DeliveryItem(event_id=1005, stream_id=3, amount_wei=50)]
    assert deliver(d, 5, second)["status"] == 1
    state = snapshot(d)
    assert state["next_sequence"] == 6
    assert state["stream_totals"][3] == 300
    assert state["total_received"] == 418 == state["balance"]
    assert [log.sequence for log in delivered_logs(d.w3, d.address, 0, "latest")] == list(range(6))


def test_only_the_signer_may_deliver(tester_reserve: Deployed) -> None:
    d = tester_reserve
    intruder = dev_signer_fund(d.w3, amount_wei=10**20)
    exc = revert_of(d.w3, raw_deliver_call(d, [0, [1], [0], [5]], 5, sender=intruder.address))
    assert "not signer" in error_message(exc)
    assert classify_error(exc) == "fatal"
    # and signed + mined (explicit gas, no simulation) it reverts without effect
    other = Deployed.__new__(Deployed)
    other.w3, other.signer, other.address = d.w3, intruder, d.address
    receipt = deliver(other, 0, [DeliveryItem(1, 0, 5)], gas=300_000)
    assert receipt["status"] == 0
    assert snapshot(d)["next_sequence"] == 0 and snapshot(d)["balance"] == 0
    assert "not signer" in error_message(explain_failed_receipt(d.w3, receipt))  # type: ignore[arg-type]


def test_resent_batch_is_refused_as_already_delivered(tester_reserve: Deployed) -> None:
    d = tester_reserve
    items = [DeliveryItem(1, 0, 10), DeliveryItem(2, 1, 20)]
    assert deliver(d, 0, items)["status"] == 1
    before = snapshot(d)

    # building it again simulates it: the estimate reverts with "already delivered"
    with pytest.raises(REVERT_ERRORS) as info:
        deliver(d, 0, items)
    assert "already delivered" in error_message(info.value)
    assert classify_error(info.value) == "already_delivered"

    # a blind re-broadcast (explicit gas) is mined as a revert and changes nothing
    receipt = deliver(d, 0, items, gas=300_000)
    assert receipt["status"] == 0
    failure = explain_failed_receipt(d.w3, receipt)
    assert failure is not None and classify_error(failure) == "already_delivered"
    # a batch overlapping the delivered range is refused too
    exc = revert_of(d.w3, raw_deliver_call(d, [1, [2, 3], [1, 1], [20, 30]], 50))
    assert classify_error(exc) == "already_delivered"
    assert snapshot(d) == before


def test_sequence_gap_is_refused(tester_reserve: Deployed) -> None:
    d = tester_reserve
    exc = revert_of(d.w3, raw_deliver_call(d, [1, [1], [0], [5]], 5))
    assert "sequence gap" in error_message(exc)
    assert classify_error(exc) == "fatal"
    assert deliver(d, 0, [DeliveryItem(1, 0, 5)])["status"] == 1
    exc = revert_of(d.w3, raw_deliver_call(d, [3, [2], [0], [5]], 5))
    assert "sequence gap" in error_message(exc)
    assert chain_next_sequence(d.w3, d.address) == 1


@pytest.mark.parametrize("value", [0, 29, 31, 10**18])
def test_value_must_equal_the_sum_of_amounts(tester_reserve: Deployed, value: int) -> None:
    d = tester_reserve
    exc = revert_of(d.w3, raw_deliver_call(d, [0, [1, 2], [0, 1], [10, 20]], value))
    assert "value mismatch" in error_message(exc)
    receipt = deliver(d, 0, [DeliveryItem(1, 0, 10), DeliveryItem(2, 1, 20)], gas=300_000, value=value)
    assert receipt["status"] == 0
    assert snapshot(d)["next_sequence"] == 0


@pytest.mark.parametrize(
    ("args", "value", "reason"),
    [
        ([0, [], [], []], 0, "empty batch"),
        ([0, [1, 2], [0], [1, 1]], 2, "length mismatch"),
        ([0, [1], [0], [1, 1]], 2, "length mismatch"),
        ([0, [1], [10], [1]], 1, "bad stream"),
        ([0, [1], [255], [1]], 1, "bad stream"),
    ],
)
def test_malformed_batches_are_refused(tester_reserve: Deployed, args: list[Any], value: int, reason: str) -> None:
    exc = revert_of(tester_reserve.w3, raw_deliver_call(tester_reserve, args, value))
    assert reason in error_message(exc)
    assert classify_error(exc) == "fatal"


def test_plain_sends_are_refused(tester_reserve: Deployed) -> None:
    d = tester_reserve
    w3 = d.w3
    with pytest.raises(REVERT_ERRORS) as info:
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": d.address, "value": 1})
    assert "plain sends refused" in error_message(info.value)
    # a signed plain transfer with explicit gas is mined as a revert; the ETH stays with the sender
    max_fee, priority = suggest_fees(w3)
    tx = {
        "type": 2,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(d.signer.address),
        "to": d.address,
        "value": 10**15,
        "data": "0x",
        "gas": 60_000,
        "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": priority,
    }
    receipt = wait_for_receipt(w3, sign_and_send(w3, signer=d.signer, tx=tx))
    assert receipt["status"] == 0
    assert w3.eth.get_balance(d.address) == 0
    # unknown calldata is refused the same way
    exc = revert_of(w3, {"from": d.signer.address, "to": d.address, "value": 0, "data": "0xdeadbeef"})
    assert "plain sends refused" in error_message(exc)


batches = st.lists(
    st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, 10**18)),
        min_size=1,
        max_size=12,
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches)
def test_totals_match_a_model_for_random_batches(tester_w3: Web3, batches: list[list[tuple[int, int]]]) -> None:
    d = Deployed(tester_w3)  # a fresh contract per example (the chain fixture is shared)
    model = [0] * 10
    sequence = 0
    for batch in batches:
        items = [DeliveryItem(event_id=sequence + i + 1, stream_id=s, amount_wei=a) for i, (s, a) in enumerate(batch)]
        assert deliver(d, sequence, items)["status"] == 1
        for s, a in batch:
            model[s] += a
        sequence += len(items)
    state = snapshot(d)
    assert state["stream_totals"] == model
    assert state["total_received"] == sum(model) == state["balance"]
    assert state["next_sequence"] == sequence
    assert [log.sequence for log in delivered_logs(tester_w3, d.address, 0, "latest")] == list(range(sequence))
