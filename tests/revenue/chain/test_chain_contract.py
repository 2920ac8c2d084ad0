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
    chain_items_paid,
    classify_error,
    contract_health,
    delivered_logs,
    dev_signer_fund,
    explain_failed_receipt,
    item_paid,
    operator_cause,
    payment_logs,
    reserve_contract,
    sign_and_send,
    suggest_fees,
    wait_for_receipt,
)
from revenue.chain.compile import compile_source
from revenue.chain.errors import error_message

from .conftest import REVERT_ERRORS, Deployed, reserve_owner_call


def deliver(
    d: Deployed, items: list[DeliveryItem], *, gas: int | None = None, signer: Any = None, **overrides: Any
) -> Any:
    """Build (estimating gas unless given), sign, send, wait; returns the receipt."""
    w3 = d.w3
    sender = signer or d.signer
    max_fee, priority = suggest_fees(w3)
    tx = build_delivery_tx(
        w3,
        contract_address=d.address,
        signer_address=sender.address,
        items=items,
        nonce=w3.eth.get_transaction_count(sender.address, "pending"),
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        gas=gas,
    )
    tx.update(overrides)
    return wait_for_receipt(w3, sign_and_send(w3, signer=sender, tx=tx))


def transact(d: Deployed, sender: Any, function: str, *args: Any) -> Any:
    """Call an owner function from ``sender`` (explicit gas: a revert is mined, not simulated)."""
    return wait_for_receipt(d.w3, reserve_owner_call(d.w3, d.address, sender, function, *args))


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
        "items_paid": c.items_paid().call(),
        "total_received": c.total_received().call(),
        "stream_totals": [c.stream_totals(i).call() for i in range(10)],
        "balance": d.w3.eth.get_balance(d.address),
    }


def test_deploy_records_owner_and_signer_and_starts_empty(tester_reserve: Deployed) -> None:
    d = tester_reserve
    c = reserve_contract(d.w3, d.address).functions
    assert c.owner().call() == d.signer.address
    assert c.signers(d.signer.address).call() is True and c.paused().call() is False
    assert snapshot(d) == {"items_paid": 0, "total_received": 0, "stream_totals": [0] * 10, "balance": 0}
    health = contract_health(d.w3, d.address, d.signer.address)
    assert health.fault() is None and health.compatible
    # what is on chain is the runtime code of the committed source
    runtime = compile_source(SOURCE_PATH.read_text(encoding="utf-8"))["bytecode_runtime"]
    assert d.w3.eth.get_code(d.address).to_0x_hex() == runtime


def test_batch_delivery_totals_and_logs(tester_reserve: Deployed) -> None:
    d = tester_reserve
    items = [
        DeliveryItem(item_id=1001, stream_id=0, amount_wei=100),
        DeliveryItem(item_id=1002, stream_id=3, amount_wei=250),
        DeliveryItem(item_id=1003, stream_id=0, amount_wei=7),
        DeliveryItem(item_id=1004, stream_id=9, amount_wei=0),
        DeliveryItem(item_id=2**256 - 1, stream_id=9, amount_wei=11),
    ]
    receipt = deliver(d, items)
    assert receipt["status"] == 1
    state = snapshot(d)
    assert state["items_paid"] == 5
    assert state["total_received"] == 368 == state["balance"]
    expected = [0] * 10
    expected[0], expected[3], expected[9] = 107, 250, 11
    assert state["stream_totals"] == expected

    logs = delivered_logs(d.w3, d.address, 0, "latest")
    assert [(log.item_id, log.stream_id, log.amount, log.paid) for log in logs] == [
        (item.item_id, item.stream_id, item.amount_wei, True) for item in items
    ]
    tx_hash = receipt["transactionHash"].to_0x_hex()
    block_hash = receipt["blockHash"].to_0x_hex()
    assert {(log.tx_hash, log.block_number, log.block_hash) for log in logs} == {
        (tx_hash, receipt["blockNumber"], block_hash)
    }
    assert len(receipt["logs"]) == len(items)
    assert all(item_paid(d.w3, d.address, item.item_id) for item in items)
    assert not item_paid(d.w3, d.address, 1005)

    second = [DeliveryItem(item_id=1005, stream_id=3, amount_wei=50)]
    assert deliver(d, second)["status"] == 1
    state = snapshot(d)
    assert state["items_paid"] == 6 and state["stream_totals"][3] == 300
    assert state["total_received"] == 418 == state["balance"]


def test_an_item_paid_once_is_refused_whatever_carries_it(tester_reserve: Deployed) -> None:
    d = tester_reserve
    assert deliver(d, [DeliveryItem(1, 0, 10), DeliveryItem(2, 1, 20)])["status"] == 1
    before = snapshot(d)
    # another sender the owner authorised, another nonce, the same items among new ones
    other = dev_signer_fund(d.w3, amount_wei=10**20)
    assert transact(d, d.signer, "set_signer", other.address, True)["status"] == 1
    balance = d.w3.eth.get_balance(other.address)
    items = [DeliveryItem(2, 1, 20), DeliveryItem(3, 2, 30), DeliveryItem(1, 0, 10), DeliveryItem(3, 2, 30)]
    receipt = deliver(d, items, signer=other)
    assert receipt["status"] == 1  # the rest of the batch goes through
    logs = [log for log in payment_logs(d.w3, d.address, 0, "latest") if log.block_number == receipt["blockNumber"]]
    expected = [(2, False, 20), (3, True, 30), (1, False, 10), (3, False, 30)]
    assert [(log.item_id, log.paid, log.amount) for log in logs] == expected
    state = snapshot(d)
    assert state["items_paid"] == before["items_paid"] + 1
    assert state["total_received"] == before["total_received"] + 30 == state["balance"]
    assert state["stream_totals"][2] == 30 and state["stream_totals"][1] == 20
    # what was refused came back: the sender paid 30 and its gas
    gas_paid = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert balance - d.w3.eth.get_balance(other.address) == 30 + gas_paid
    # every id once in the Delivered logs
    assert sorted(log.item_id for log in delivered_logs(d.w3, d.address, 0, "latest")) == [1, 2, 3]


@pytest.mark.parametrize("ids", [[255, 256], [0, 256, 1, 257], [2**256 - 1, 2**256 - 2], [511, 512, 255, 0]])
def test_bitmap_words_across_boundaries(tester_reserve: Deployed, ids: list[int]) -> None:
    d = tester_reserve
    assert deliver(d, [DeliveryItem(i, 0, 1) for i in ids])["status"] == 1
    assert all(item_paid(d.w3, d.address, i) for i in ids)
    neighbours = {i ^ 1 for i in ids} | {i + 1 for i in ids if i + 1 < 2**256} - set(ids)
    assert not any(item_paid(d.w3, d.address, i) for i in neighbours - set(ids))
    receipt = deliver(d, [DeliveryItem(i, 0, 1) for i in ids], gas=400_000)
    assert receipt["status"] == 1 and snapshot(d)["items_paid"] == len(ids)


def test_only_an_authorised_signer_may_deliver(tester_reserve: Deployed) -> None:
    d = tester_reserve
    intruder = dev_signer_fund(d.w3, amount_wei=10**20)
    exc = revert_of(d.w3, raw_deliver_call(d, [[1], [0], [5]], 5, sender=intruder.address))
    assert "not signer" in error_message(exc)
    assert classify_error(exc) == "operator" and operator_cause(exc) == "signer_refused"
    # signed + mined (explicit gas, no simulation) it reverts without effect
    receipt = deliver(d, [DeliveryItem(1, 0, 5)], gas=300_000, signer=intruder)
    assert receipt["status"] == 0
    assert snapshot(d)["items_paid"] == 0 and snapshot(d)["balance"] == 0
    assert operator_cause(explain_failed_receipt(d.w3, receipt)) == "signer_refused"  # type: ignore[arg-type]
    # the owner revokes its own signer: refused too, until authorised again
    assert transact(d, d.signer, "set_signer", d.signer.address, False)["status"] == 1
    assert contract_health(d.w3, d.address, d.signer.address).fault().cause == "signer_refused"  # type: ignore[union-attr]
    assert "not signer" in error_message(revert_of(d.w3, raw_deliver_call(d, [[1], [0], [5]], 5)))
    assert transact(d, d.signer, "set_signer", d.signer.address, True)["status"] == 1
    assert deliver(d, [DeliveryItem(1, 0, 5)])["status"] == 1
    # only the owner manages signers, the pause and ownership
    owner_only = [("set_signer", (intruder.address, True)), ("set_paused", (True,)), ("set_owner", (intruder.address,))]
    for function, args in owner_only:
        assert transact(d, intruder, function, *args)["status"] == 0


def test_a_paused_reserve_refuses_deliveries(tester_reserve: Deployed) -> None:
    d = tester_reserve
    assert transact(d, d.signer, "set_paused", True)["status"] == 1
    exc = revert_of(d.w3, raw_deliver_call(d, [[1], [0], [5]], 5))
    assert "paused" in error_message(exc) and operator_cause(exc) == "contract_paused"
    assert contract_health(d.w3, d.address, d.signer.address).fault().cause == "contract_paused"  # type: ignore[union-attr]
    assert transact(d, d.signer, "set_paused", False)["status"] == 1
    assert deliver(d, [DeliveryItem(1, 0, 5)])["status"] == 1


@pytest.mark.parametrize("value", [0, 29, 31, 10**18])
def test_value_must_equal_the_sum_of_amounts(tester_reserve: Deployed, value: int) -> None:
    d = tester_reserve
    exc = revert_of(d.w3, raw_deliver_call(d, [[1, 2], [0, 1], [10, 20]], value))
    assert "value mismatch" in error_message(exc)
    receipt = deliver(d, [DeliveryItem(1, 0, 10), DeliveryItem(2, 1, 20)], gas=300_000, value=value)
    assert receipt["status"] == 0
    assert snapshot(d)["items_paid"] == 0 and not item_paid(d.w3, d.address, 1)


@pytest.mark.parametrize(
    ("args", "value", "reason"),
    [
        ([[], [], []], 0, "empty batch"),
        ([[1, 2], [0], [1, 1]], 2, "length mismatch"),
        ([[1], [0], [1, 1]], 2, "length mismatch"),
        ([[1], [10], [1]], 1, "bad stream"),
        ([[1], [255], [1]], 1, "bad stream"),
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
    exc = revert_of(w3, {"from": d.signer.address, "to": d.address, "value": 0, "data": "0xdeadbeef"})
    assert "plain sends refused" in error_message(exc)


def test_a_contract_of_another_kind_is_not_compatible(tester_w3: Web3) -> None:
    d = Deployed(tester_w3)
    health = contract_health(tester_w3, d.signer.address, d.signer.address)  # an account: no code
    assert health.fault().cause == "contract_missing"  # type: ignore[union-attr]


batches = st.lists(
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 9), st.integers(0, 10**18)), min_size=1, max_size=12),
    min_size=1,
    max_size=4,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches)
def test_each_id_is_paid_once_and_totals_match_a_model(
    tester_w3: Web3, batches: list[list[tuple[int, int, int]]]
) -> None:
    d = Deployed(tester_w3)  # a fresh contract per example (the chain fixture is shared)
    model = [0] * 10
    paid: dict[int, int] = {}
    for batch in batches:
        items = [DeliveryItem(item_id=i, stream_id=s, amount_wei=a) for i, s, a in batch]
        assert deliver(d, items, gas=2_000_000)["status"] == 1
        for i, s, a in batch:
            if i not in paid:
                paid[i] = a
                model[s] += a
    state = snapshot(d)
    assert state["stream_totals"] == model
    assert state["total_received"] == sum(model) == state["balance"]
    assert state["items_paid"] == len(paid) == chain_items_paid(tester_w3, d.address)
    logs = delivered_logs(tester_w3, d.address, 0, "latest")
    assert {log.item_id: log.amount for log in logs} == paid and len(logs) == len(paid)
