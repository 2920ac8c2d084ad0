"""Fixtures for the on-chain tests.

In-process chain: ``tester_w3`` (eth-tester, py-evm backend, a fresh chain per test).

anvil (tests marked ``@pytest.mark.anvil``): the project-local binary installed by
``npm ci`` (see revenue/chain/devnode.py). Missing binary: ``pytest.fail`` when
CI=true, else ``pytest.skip``.

- ``anvil``          session: starts anvil on 127.0.0.1:<free port>, yields its URI
- ``anvil_ctl``      per test: cheat-code helpers (snapshot/revert, mine, automine,
                     drop tx, next base fee, timestamp interval, reorg/rollback);
                     the chain is snapshotted before and reverted after each test
- ``anvil_w3``       per test: a Web3 on the session anvil
- ``anvil_factory``  per test: start extra anvils (e.g. with ``state_path`` for
                     stop/restart node-down tests); all stopped at teardown
- ``dead_uri``       an http URI on which nothing listens
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import ContractLogicError

from revenue.chain.client import (
    build_reserve_call_tx,
    connect,
    deploy_reserve,
    dev_signer_fund,
    send_signed,
    sign_tx,
    suggest_fees,
)
from revenue.chain.devnode import AnvilError, AnvilNode, AnvilRPC, find_anvil, free_port
from tests.environment import require

FUNDING_WEI = 10**21  # 1000 ETH for a fresh dev signer
# what a simulated revert raises: web3 over JSON-RPC (anvil), eth-tester in process
REVERT_ERRORS = (ContractLogicError, TransactionFailed)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "anvil: needs the project-local anvil node (npm ci)")


def require_anvil() -> Path:
    binary = find_anvil()
    require(binary is not None, "project-local anvil is not installed: run `npm ci` at the repository root")
    assert binary is not None
    return binary


def start_anvil(**kwargs: Any) -> AnvilNode:
    """Start a project-local anvil on a free port (a few tries: a free port can be taken meanwhile)."""
    binary = require_anvil()
    error: AnvilError | None = None
    for _ in range(3):
        node = AnvilNode(binary, **kwargs)
        try:
            return node.start()
        except AnvilError as exc:
            node.stop()
            error = exc
    raise AssertionError(f"anvil did not start: {error}")


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def anvil(anvil_node: AnvilNode) -> str:
    """URI of the session's project-local anvil (chain id 31337, 1 gwei genesis base fee)."""
    return anvil_node.uri


@pytest.fixture
def anvil_ctl(anvil: str) -> Iterator[AnvilRPC]:
    ctl = AnvilRPC(anvil)
    snapshot = ctl.snapshot()
    # A base fee set for the next block (set_next_block_base_fee) is the node's, not the
    # chain's: a test that set one and mined no block after passed it to the next test
    # (a signer funded for a few batches at 1 gwei then had too little at 3x).
    next_base_fee = int(ctl.rpc("eth_getBlockByNumber", "pending", False)["baseFeePerGas"], 16)
    try:
        yield ctl
    finally:
        ctl.set_automine(True)
        ctl.remove_block_timestamp_interval()
        assert ctl.revert(snapshot), "evm_revert failed: the next test would see this test's chain"
        ctl.set_next_block_base_fee(next_base_fee)


@pytest.fixture
def anvil_w3(anvil: str, anvil_ctl: AnvilRPC) -> Web3:
    return connect(provider_uri=anvil)


@pytest.fixture
def anvil_factory() -> Iterator[Callable[..., AnvilNode]]:
    nodes: list[AnvilNode] = []

    def factory(**kwargs: Any) -> AnvilNode:
        node = start_anvil(**kwargs)
        nodes.append(node)
        return node

    try:
        yield factory
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def dead_uri() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def tester_w3() -> Web3:
    return connect(provider_uri=None)


def reserve_owner_call(w3: Web3, address: str, sender: Any, function: str, *args: Any, tip: int = 0) -> str:
    """Send one of the reserve's owner functions from ``sender`` (not waited for); ``tip``
    raises both fees, to be mined ahead of the transactions in the pool."""
    max_fee, priority = suggest_fees(w3)
    tx = build_reserve_call_tx(
        w3,
        contract_address=address,
        sender_address=sender.address,
        function=function,
        args=args,
        nonce=w3.eth.get_transaction_count(sender.address, "pending"),
        max_fee_per_gas=max_fee + tip,
        max_priority_fee_per_gas=priority + tip,
    )
    return send_signed(w3, sign_tx(sender, tx))


class Deployed:
    """A fresh dev signer and a HolderReserve it deployed."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.signer = dev_signer_fund(w3, amount_wei=FUNDING_WEI)
        self.address = deploy_reserve(w3, signer=self.signer)


@pytest.fixture
def tester_reserve(tester_w3: Web3) -> Deployed:
    return Deployed(tester_w3)


@pytest.fixture
def anvil_reserve(anvil_w3: Web3) -> Deployed:
    return Deployed(anvil_w3)
