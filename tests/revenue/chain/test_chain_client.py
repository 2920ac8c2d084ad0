"""Client primitives: units, fees, signers, tx building, error classification, status."""

from __future__ import annotations

import http.server
import threading
import time
import traceback
from decimal import Decimal
from fractions import Fraction

import pytest
import requests
from eth_account import Account
from eth_tester.exceptions import TransactionFailed
from hypothesis import given
from hypothesis import strategies as st
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError

from revenue.chain.client import (
    ChainUnavailable,
    DeliveryItem,
    FatalChainError,
    Signer,
    TransientChainError,
    build_delivery_tx,
    build_self_transfer_tx,
    bump_fees,
    chain_items_paid,
    chain_status,
    classify_error,
    confirmations,
    connect,
    dev_signer_fund,
    encode_deliver_call,
    error_message,
    is_underpriced,
    node_chain_id,
    operator_cause,
    receipt_or_none,
    reserve_contract,
    send_signed,
    sign_and_send,
    sign_tx,
    signer_from_key,
    suggest_fees,
    usd_to_wei,
    wait_for_receipt,
)

from .conftest import Deployed

# --------------------------------------------------------------------------- usd_to_wei


@pytest.mark.parametrize(
    ("usd", "price", "wei"),
    [
        ("3000", "3000", 10**18),
        ("1", "3000", 333_333_333_333_333),  # 333333333333333.33.. rounded down
        ("2", "3", 666_666_666_666_666_666),  # 666..666.67 rounded down, not up
        ("0", "3000", 0),
        ("0.000000000000000001", "1", 1),
        ("0.0000000000000000019", "1", 1),
        ("123.45", "2469", 50_000_000_000_000_000),
        ("1000000000", "0.5", 2 * 10**27),
    ],
)
def test_usd_to_wei_rounds_down(usd: str, price: str, wei: int) -> None:
    assert usd_to_wei(Decimal(usd), eth_usd_price=Decimal(price)) == wei


@pytest.mark.parametrize("price", ["0", "-1", "-0.01"])
def test_usd_to_wei_rejects_non_positive_price(price: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        usd_to_wei(Decimal("1"), eth_usd_price=Decimal(price))


def test_usd_to_wei_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        usd_to_wei(Decimal("-1"), eth_usd_price=Decimal("3000"))
    with pytest.raises(ValueError):
        usd_to_wei(Decimal("NaN"), eth_usd_price=Decimal("3000"))
    with pytest.raises(ValueError):
        usd_to_wei(Decimal("1"), eth_usd_price=Decimal("Infinity"))
    with pytest.raises(TypeError):
        usd_to_wei(1.5, eth_usd_price=Decimal("3000"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        usd_to_wei(Decimal("1"), eth_usd_price=3000.0)  # type: ignore[arg-type]


@given(
    usd=st.decimals(min_value=0, max_value=10**12, places=8, allow_nan=False, allow_infinity=False),
    price=st.decimals(min_value=Decimal("0.01"), max_value=10**7, places=4, allow_nan=False, allow_infinity=False),
)
def test_usd_to_wei_never_pays_more_than_owed(usd: Decimal, price: Decimal) -> None:
    wei = usd_to_wei(usd, eth_usd_price=price)
    owed = Fraction(usd) * 10**18 / Fraction(price)
    assert isinstance(wei, int)
    assert wei <= owed < wei + 1


# --------------------------------------------------------------------------- fees


def test_bump_fees_raises_both_by_at_least_ten_percent() -> None:
    assert bump_fees(1_000, 100) == (1_125, 113)  # default 12.5%, rounded up
    assert bump_fees(1_000, 100, percent=10) == (1_100, 110)
    assert bump_fees(3_000_000_001, 1_000_000_001, percent=Decimal("12.5")) == (3_375_000_002, 1_125_000_002)
    # tiny fees still rise by at least 1 wei, and max fee >= priority fee
    assert bump_fees(1, 1) == (2, 2)
    assert bump_fees(0, 0) == (1, 1)
    new_max, new_prio = bump_fees(10, 10, percent=50)
    assert new_max >= new_prio == 15


@given(
    old_max=st.integers(0, 10**15),
    old_prio=st.integers(0, 10**15),
    percent=st.decimals(min_value=10, max_value=200, places=2, allow_nan=False, allow_infinity=False),
)
def test_bump_fees_property(old_max: int, old_prio: int, percent: Decimal) -> None:
    new_max, new_prio = bump_fees(old_max, old_prio, percent=percent)
    assert new_max * 10 >= old_max * 11 and new_max > old_max
    assert new_prio * 10 >= old_prio * 11 and new_prio > old_prio
    assert new_max >= new_prio


@pytest.mark.parametrize("percent", [0, 5, Decimal("9.99"), -10])
def test_bump_fees_refuses_a_bump_below_ten_percent(percent: Decimal) -> None:
    with pytest.raises(ValueError, match="at least 10"):
        bump_fees(1_000, 100, percent=percent)


def test_suggest_fees_follow_the_base_fee(tester_w3: Web3) -> None:
    max_fee, priority = suggest_fees(tester_w3)
    base = tester_w3.eth.get_block("latest")["baseFeePerGas"]
    assert priority >= 1
    assert max_fee >= 2 * base + priority


# --------------------------------------------------------------------------- signers


def test_signer_from_key_and_repr_hides_the_key() -> None:
    account = Account.create()
    key_hex = account.key.hex()
    signer = signer_from_key(key_hex)
    assert signer.address == account.address
    assert signer_from_key("0x" + key_hex.removeprefix("0x")).address == account.address
    assert key_hex.removeprefix("0x") not in repr(signer) and account.address in repr(signer)
    for bad in ["", "   ", "0x1234", "zz" * 32]:
        with pytest.raises(ValueError) as info:
            signer_from_key(bad)
        assert info.value.__cause__ is None


def test_dev_signer_fund_makes_fresh_funded_accounts(tester_w3: Web3) -> None:
    a = dev_signer_fund(tester_w3, amount_wei=12345)
    b = dev_signer_fund(tester_w3, amount_wei=10**18)
    assert a.address != b.address
    assert a.address not in tester_w3.eth.accounts
    assert tester_w3.eth.get_balance(a.address) == 12345
    assert tester_w3.eth.get_balance(b.address) == 10**18


def test_connect_selects_provider() -> None:
    assert type(connect(provider_uri=None).provider).__name__ == "EthereumTesterProvider"
    assert type(connect(provider_uri="").provider).__name__ == "EthereumTesterProvider"
    http = connect(provider_uri="http://127.0.0.1:1", timeout=1.5)
    assert type(http.provider).__name__ == "HTTPProvider"
    assert http.provider.get_request_kwargs()["timeout"] == 1.5  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        connect(provider_uri="ws://127.0.0.1:8546")


# --------------------------------------------------------------------------- tx building


def test_delivery_item_validation() -> None:
    DeliveryItem(0, 9, 0)
    for args in [(-1, 0, 1), (2**256, 0, 1), (1, 10, 1), (1, -1, 1), (1, 0, -1), (1, 0, 2**256)]:
        with pytest.raises(ValueError):
            DeliveryItem(*args)
    with pytest.raises(TypeError):
        DeliveryItem(1, 0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DeliveryItem(1, True, 1)


def test_build_delivery_tx_is_explicit_eip1559(tester_reserve: Deployed) -> None:
    d = tester_reserve
    items = [DeliveryItem(10, 1, 3), DeliveryItem(11, 2, 4)]
    tx = build_delivery_tx(
        d.w3,
        contract_address=d.address.lower(),
        signer_address=d.signer.address,
        items=items,
        nonce=1,
        max_fee_per_gas=5 * 10**9,
        max_priority_fee_per_gas=10**9,
        gas=123_456,
    )
    assert tx["type"] == 2 and tx["chainId"] == d.w3.eth.chain_id
    assert tx["nonce"] == 1 and tx["gas"] == 123_456 and tx["value"] == 7
    assert (tx["maxFeePerGas"], tx["maxPriorityFeePerGas"]) == (5 * 10**9, 10**9)
    assert tx["to"] == d.address and tx["from"] == d.signer.address
    assert "gasPrice" not in tx
    func, args = reserve_contract(d.w3, d.address).decode_function_input(tx["data"])
    assert func.fn_name == "deliver"
    assert args == {"item_ids": [10, 11], "stream_ids": [1, 2], "amounts": [3, 4]}

    estimated = build_delivery_tx(
        d.w3,
        contract_address=d.address,
        signer_address=d.signer.address,
        items=items,
        nonce=1,
        max_fee_per_gas=5 * 10**9,
        max_priority_fee_per_gas=10**9,
    )
    assert 50_000 < estimated["gas"] < 300_000


def test_self_transfer_fills_a_nonce_with_nothing(tester_reserve: Deployed) -> None:
    d = tester_reserve
    nonce = d.w3.eth.get_transaction_count(d.signer.address)
    tx = build_self_transfer_tx(
        d.w3, signer_address=d.signer.address, nonce=nonce, max_fee_per_gas=10**10, max_priority_fee_per_gas=10**9
    )
    assert (tx["to"], tx["value"], tx["data"], tx["gas"]) == (d.signer.address, 0, "0x", 21_000)
    before = d.w3.eth.get_balance(d.signer.address)
    receipt = wait_for_receipt(d.w3, sign_and_send(d.w3, signer=d.signer, tx=tx))
    assert receipt["status"] == 1 and d.w3.eth.get_transaction_count(d.signer.address) == nonce + 1
    assert before - d.w3.eth.get_balance(d.signer.address) == receipt["gasUsed"] * receipt["effectiveGasPrice"]


@given(
    items=st.lists(
        st.builds(
            DeliveryItem,
            item_id=st.integers(min_value=0, max_value=2**256 - 1),
            stream_id=st.integers(min_value=0, max_value=9),
            amount_wei=st.integers(min_value=0, max_value=2**256 - 1),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_deliver_calldata_is_what_web3_encodes(items: list[DeliveryItem]) -> None:
    # The calldata is encoded with eth_abi directly; it must equal the contract ABI's encoding.
    w3 = Web3()
    address = "0x" + "11" * 20
    expected = reserve_contract(w3, address).encode_abi(
        "deliver",
        args=[
            [item.item_id for item in items],
            [item.stream_id for item in items],
            [item.amount_wei for item in items],
        ],
    )
    assert encode_deliver_call(items) == expected


def test_build_delivery_tx_refuses_bad_batches(tester_reserve: Deployed) -> None:
    d = tester_reserve
    common = {
        "contract_address": d.address,
        "signer_address": d.signer.address,
        "nonce": 1,
        "max_fee_per_gas": 2,
        "max_priority_fee_per_gas": 1,
        "gas": 100_000,
    }
    with pytest.raises(ValueError):
        build_delivery_tx(d.w3, items=[], **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_delivery_tx(d.w3, items=[DeliveryItem(i, 0, 1) for i in range(257)], **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_delivery_tx(d.w3, items=[DeliveryItem(1, 0, 1)], **dict(common, nonce=-1))  # type: ignore[arg-type]
    bad_fees = dict(common, max_fee_per_gas=1, max_priority_fee_per_gas=2)
    with pytest.raises(ValueError):
        build_delivery_tx(d.w3, items=[DeliveryItem(1, 0, 1)], **bad_fees)  # type: ignore[arg-type]


def test_sign_tx_checks_sender_and_explicit_fields(tester_reserve: Deployed) -> None:
    d = tester_reserve
    tx = build_delivery_tx(
        d.w3,
        contract_address=d.address,
        signer_address=d.signer.address,
        items=[DeliveryItem(1, 0, 1)],
        nonce=1,
        max_fee_per_gas=10**10,
        max_priority_fee_per_gas=10**9,
        gas=200_000,
    )
    other = Account.create()
    with pytest.raises(ValueError, match="signer is"):
        sign_tx(other, tx)
    for field in ("nonce", "chainId", "gas", "maxFeePerGas"):
        incomplete = dict(tx)
        incomplete.pop(field)
        with pytest.raises(ValueError, match=field):
            sign_tx(d.signer, incomplete)
    signed = sign_tx(Signer(d.signer), tx)
    assert signed.raw_transaction[0] == 2  # EIP-2718 type 2 envelope
    decoded = Account.recover_transaction(signed.raw_transaction)
    assert decoded == d.signer.address
    tx_hash = send_signed(d.w3, signed)
    assert tx_hash == signed.tx_hash
    assert wait_for_receipt(d.w3, tx_hash)["status"] == 1


def test_receipts_and_confirmations(tester_reserve: Deployed) -> None:
    d = tester_reserve
    w3 = d.w3
    assert receipt_or_none(w3, "0x" + "ab" * 32) is None
    max_fee, prio = suggest_fees(w3)
    tx = build_delivery_tx(
        w3,
        contract_address=d.address,
        signer_address=d.signer.address,
        items=[DeliveryItem(1, 0, 1)],
        nonce=1,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=prio,
    )
    tx_hash = sign_and_send(w3, signer=d.signer, tx=tx)
    receipt = receipt_or_none(w3, tx_hash)
    assert receipt is not None and receipt["status"] == 1
    assert confirmations(w3, receipt) == 1
    w3.provider.ethereum_tester.mine_blocks(3)  # type: ignore[attr-defined]
    assert confirmations(w3, receipt) == 4
    forged = dict(receipt, blockHash=b"\x01" * 32)
    assert confirmations(w3, forged) == 0  # type: ignore[arg-type]
    assert confirmations(w3, dict(receipt, blockNumber=w3.eth.block_number + 5)) == 0  # type: ignore[arg-type]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ContractLogicError("execution reverted: not signer"), "operator"),
        (TransactionFailed("execution reverted: not signer"), "operator"),
        (ContractLogicError("execution reverted: paused"), "operator"),
        (ContractLogicError("execution reverted: bad stream"), "fatal"),
        (TransactionFailed("execution reverted: value mismatch"), "fatal"),
        (ValueError("already delivered"), "fatal"),
        (requests.ConnectionError("Connection refused"), "transient"),
        (requests.Timeout("read timed out"), "transient"),
        (ConnectionRefusedError(111, "refused"), "transient"),
        (TimeoutError(), "transient"),
        (TimeExhausted("no receipt after 120s"), "transient"),
        (Web3RPCError("{'code': -32003, 'message': 'nonce too low'}"), "transient"),
        (Web3RPCError("{'code': -32000, 'message': 'replacement transaction underpriced'}"), "transient"),
        (Web3RPCError("{'code': -32003, 'message': 'transaction already imported'}"), "transient"),
        (Web3RPCError("{'code': -32000, 'message': 'insufficient funds for gas * price + value'}"), "operator"),
        (Web3RPCError("{'code': -32003, 'message': 'Insufficient funds for gas * price + value'}"), "operator"),
        (TransientChainError("later"), "transient"),
        (ChainUnavailable("down"), "transient"),
        (FatalChainError("no"), "fatal"),
        (KeyError("x"), "fatal"),
    ],
)
def test_classify_error(exc: BaseException, kind: str) -> None:
    assert classify_error(exc) == kind


def test_classify_error_follows_causes() -> None:
    try:
        try:
            raise requests.ConnectionError("refused")
        except requests.ConnectionError as inner:
            raise RuntimeError("delivery attempt failed") from inner
    except RuntimeError as outer:
        assert classify_error(outer) == "transient"
    try:
        try:
            raise ContractLogicError("execution reverted: not signer")
        except ContractLogicError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert classify_error(outer) == "operator" and operator_cause(outer) == "signer_refused"


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (ContractLogicError("execution reverted: not signer"), "signer_refused"),
        (ContractLogicError("execution reverted: paused"), "contract_paused"),
        (
            Web3RPCError("{'code': -32003, 'message': 'Insufficient funds for gas * price + value'}"),
            "insufficient_funds",
        ),
        (ContractLogicError("execution reverted: bad stream"), None),
        (requests.ConnectionError("refused"), None),
    ],
)
def test_operator_cause(exc: BaseException, cause: str | None) -> None:
    assert operator_cause(exc) == cause


@pytest.mark.parametrize(
    ("message", "underpriced"),
    [
        ("max fee per gas less than block base fee", True),
        ("replacement transaction underpriced", True),
        ("transaction underpriced", True),
        ("fee cap less than block base fee", True),
        ("nonce too low", False),
        ("already known", False),
    ],
)
def test_underpriced_refusals_are_recognised(message: str, underpriced: bool) -> None:
    assert is_underpriced(TransientChainError(f"{{'code': -32003, 'message': '{message}'}}")) is underpriced


def test_dead_node_is_transient_and_fast(dead_uri: str) -> None:
    w3 = connect(provider_uri=dead_uri, timeout=2)
    address = "0x" + "11" * 20
    started = time.monotonic()
    with pytest.raises(ChainUnavailable) as info:
        chain_items_paid(w3, address)
    assert classify_error(info.value) == "transient"
    with pytest.raises(ChainUnavailable):
        suggest_fees(w3)
    with pytest.raises(ChainUnavailable):
        receipt_or_none(w3, "0x" + "00" * 32)
    with pytest.raises(ChainUnavailable):
        node_chain_id(w3)
    status = chain_status(w3, contract_address=address, signer_address=address)
    assert status["connected"] is False
    assert status["chain_id"] is None and status["block_number"] is None
    assert status["signer_balance_wei"] is None and status["error"]
    assert time.monotonic() - started < 10  # no retry/backoff storm


def test_chain_status_on_a_live_chain(tester_reserve: Deployed) -> None:
    d = tester_reserve
    status = chain_status(d.w3, contract_address=d.address, signer_address=d.signer.address)
    assert status["connected"] is True
    assert status["chain_id"] == d.w3.eth.chain_id
    assert status["block_number"] == d.w3.eth.block_number
    assert status["signer_balance_wei"] == d.w3.eth.get_balance(d.signer.address) > 0
    assert status["items_paid"] == 0 and status["error"] is None
    # a wrong contract address degrades the snapshot but never raises
    status = chain_status(d.w3, contract_address="0x" + "22" * 20, signer_address=d.signer.address)
    assert status["connected"] is True and status["error"]


def test_a_batch_worth_more_than_the_signer_holds_is_the_operators_insufficient_funds(
    tester_reserve: Deployed,
) -> None:
    """The in-process chain (eth-tester on py-evm, `make run`'s) refuses to estimate such a
    batch in its own words, "Sender does not have enough balance to cover transaction value
    and gas", not a node's "insufficient funds": the refusal was taken for the batch's fault
    (fatal), an attempt of each of its events used, the small shares batched with a large
    one failing with it, where delivery is to pause until the signer is topped up."""
    d = tester_reserve
    balance = d.w3.eth.get_balance(d.signer.address)
    with pytest.raises(Exception) as refused:  # whatever the chain raises
        build_delivery_tx(
            d.w3,
            contract_address=d.address,
            signer_address=d.signer.address,
            items=[DeliveryItem(12, 0, balance + 1), DeliveryItem(13, 0, 5)],
            nonce=d.w3.eth.get_transaction_count(d.signer.address),
            max_fee_per_gas=5 * 10**9,
            max_priority_fee_per_gas=10**9,
        )
    assert operator_cause(refused.value) == "insufficient_funds", error_message(refused.value)
    assert classify_error(refused.value) == "operator"


def test_the_in_process_chain_refusing_the_gas_alone_is_the_operators_insufficient_funds(
    tester_reserve: Deployed,
) -> None:
    """Below the gas its estimate asks for (the block's whole gas limit), the in-process chain
    refuses any batch with "cannot afford txn gas": the signer's funds, not the batch's fault
    (it was fatal: an attempt of each event, every cycle, until all were critical)."""
    d = tester_reserve
    poor = dev_signer_fund(d.w3, amount_wei=10**15)
    with pytest.raises(Exception) as refused:  # whatever the chain raises
        build_delivery_tx(
            d.w3,
            contract_address=d.address,
            signer_address=poor.address,
            items=[DeliveryItem(14, 0, 5)],
            nonce=0,
            max_fee_per_gas=5 * 10**9,
            max_priority_fee_per_gas=10**9,
        )
    assert "cannot afford txn gas" in error_message(refused.value)
    assert operator_cause(refused.value) == "insufficient_funds", error_message(refused.value)
    assert classify_error(refused.value) == "operator"


# --------------------------------------------------------------------------- the node's URL


def _secret_free(exc: BaseException, *secrets: str) -> str:
    """The error as every sink writes it (its text, a logged traceback) holds none of the secrets."""
    written = str(exc) + "".join(traceback.format_exception(exc))
    for secret in secrets:
        assert secret not in written, written
    return written


def test_a_dead_nodes_error_does_not_name_the_api_key_in_its_url(dead_uri: str) -> None:
    # A hosted node's URL carries its API key (https://mainnet.infura.io/v3/KEY): requests
    # wrote the path into the error, which became the pause's detail, the worker status'
    # error, the "delivery paused" ERROR line and the alert's mail and webhook.
    uri = dead_uri.replace("http://", "http://ops:PassW0rd-9@") + "/v3/Sup3rSecretApiKey?token=QueryT0ken"
    w3 = connect(provider_uri=uri, timeout=2)
    with pytest.raises(ChainUnavailable) as info:
        node_chain_id(w3)
    written = _secret_free(info.value, "Sup3rSecretApiKey", "QueryT0ken", "PassW0rd-9")
    assert classify_error(info.value) == "transient"
    assert "127.0.0.1" in written and "[redacted]" in written  # which node, still said
    status = chain_status(w3, contract_address="0x" + "11" * 20, signer_address="0x" + "11" * 20)
    assert status["connected"] is False
    _secret_free(ChainUnavailable(str(status["error"])), "Sup3rSecretApiKey", "QueryT0ken", "PassW0rd-9")


def test_a_node_refusing_the_key_does_not_echo_the_url() -> None:
    # 401 / 429 from a hosted node: raise_for_status() names the whole URL.
    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        w3 = connect(provider_uri=f"http://127.0.0.1:{server.server_port}/v2/Sup3rSecretApiKey", timeout=2)
        with pytest.raises(ChainUnavailable) as info:  # requests' HTTPError is an OSError
            node_chain_id(w3)
        written = _secret_free(info.value, "Sup3rSecretApiKey")
        assert "401" in written and f"127.0.0.1:{server.server_port}/[redacted]" in written
    finally:
        server.shutdown()
        server.server_close()
