"""Web3 client for the HolderReserve contract: connecting, signing, deploying and
the stateless delivery primitives the (Django) delivery service composes.

Nothing here keeps state between calls or reads settings: every function gets
its node (``w3``), addresses, nonce and fees passed in. Private keys are never
committed: production keys come from the caller (``signer_from_key``), dev and
test keys are generated fresh (``dev_signer_fund``).

All transactions are signed locally (EIP-1559, type 2, explicit ``nonce`` and
``chainId``) and broadcast with ``eth_sendRawTransaction``.

Errors: transport failures are raised as ``ChainUnavailable``, node-side "not now"
answers as ``TransientChainError``; contract reverts propagate as raised by web3
(``ContractLogicError``) or eth-tester (``TransactionFailed``). Use
``classify_error`` (and ``operator_cause``, ``is_underpriced``) on anything caught.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import eth_abi
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.datastructures import AttributeDict
from web3.exceptions import BlockNotFound, TransactionNotFound
from web3.providers.rpc.rpc import HTTPProvider
from web3.types import BlockIdentifier, RPCEndpoint, TxParams, TxReceipt, Wei

from revenue.chain.artifacts import Artifact, load_artifact
from revenue.chain.errors import (
    ALREADY_KNOWN_MESSAGES,
    ChainError,
    ChainUnavailable,
    ErrorKind,
    FatalChainError,
    OperatorFault,
    PauseCause,
    TransientChainError,
    classify_error,
    error_message,
    is_connection_failure,
    is_nonce_too_low,
    is_underpriced,
    operator_cause,
)
from revenue.chain.units import WEI_PER_ETH, usd_to_wei

__all__ = [
    "MAX_BATCH",
    "MIN_BUMP_PERCENT",
    "NUM_STREAMS",
    "SELF_TRANSFER_GAS",
    "WEI_PER_ETH",
    "Artifact",
    "ChainError",
    "ChainUnavailable",
    "ContractHealth",
    "DeliveryItem",
    "ErrorKind",
    "FatalChainError",
    "OperatorFault",
    "PauseCause",
    "PaymentLog",
    "SignedTx",
    "Signer",
    "TransientChainError",
    "block_hash_at",
    "build_delivery_tx",
    "build_reserve_call_tx",
    "build_self_transfer_tx",
    "bump_fees",
    "chain_items_paid",
    "chain_status",
    "classify_error",
    "confirmations",
    "connect",
    "contract_health",
    "delivered_logs",
    "deploy_reserve",
    "dev_signer_fund",
    "error_message",
    "explain_failed_receipt",
    "fees_for",
    "finalized_block_number",
    "is_connection_failure",
    "is_nonce_too_low",
    "is_underpriced",
    "item_paid",
    "load_artifact",
    "node_chain_id",
    "operator_cause",
    "payment_logs",
    "priority_fee_suggested",
    "receipt_or_none",
    "reserve_contract",
    "send_signed",
    "sign_and_send",
    "sign_tx",
    "signer_from_key",
    "suggest_fees",
    "usd_to_wei",
    "wait_for_receipt",
]

NUM_STREAMS = 10  # HolderReserve.NUM_STREAMS
MAX_BATCH = 256  # HolderReserve.MAX_BATCH
MIN_BUMP_PERCENT = Decimal(10)  # geth refuses a same-nonce replacement below +10% on both fees
DEFAULT_BUMP_PERCENT = Decimal("12.5")
DEFAULT_HTTP_TIMEOUT = 5.0
GAS_ESTIMATE_MARGIN = Decimal("1.25")
FALLBACK_PRIORITY_FEE = 10**9  # 1 gwei when the node has no eth_maxPriorityFeePerGas
SELF_TRANSFER_GAS = 21_000  # a plain 0-value transfer: what fills a nonce gap
DELIVERED_TOPIC = "0x" + keccak(text="Delivered(uint256,uint8,uint256)").hex()
REFUSED_TOPIC = "0x" + keccak(text="Refused(uint256,uint256)").hex()


# --------------------------------------------------------------------------- connection

REDACTED = "[redacted]"


def node_uri_redacted(uri: str) -> str:
    """The node's address as logs, alerts and pages may show it: scheme, host and port. A
    hosted node's URL carries its API key in the path (``https://mainnet.infura.io/v3/KEY``,
    ``.../v2/KEY``), the query or the user info; none of them is shown."""
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "") + (f":{port}" if port else "")
    hidden = parts.path not in ("", "/") or parts.query or parts.username or parts.password
    return f"{parts.scheme}://{host}/{REDACTED}" if hidden else f"{parts.scheme}://{host}"


def _node_uri_hidden(text: str, uri: str) -> str:
    """``text`` with the parts of ``uri`` that may be secret replaced: the whole URI, its
    path and query (urllib3 names the path alone: "Max retries exceeded with url: /v3/KEY")
    and its password."""
    parts = urlsplit(uri)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    replacements = {uri: node_uri_redacted(uri), uri.rstrip("/"): node_uri_redacted(uri)}
    if path not in ("", "/"):
        replacements[path] = f"/{REDACTED}"
    if parts.password:
        replacements[parts.password] = REDACTED
    for secret in sorted(replacements, key=len, reverse=True):
        text = text.replace(secret, replacements[secret])
    return text


class _NodeSession(requests.Session):
    """The node's HTTP session, whose failures never name the node's URL. requests writes it
    into every error ("HTTPConnectionPool(...): Max retries exceeded with url: /v3/KEY",
    "401 Client Error: Unauthorized for url: https://.../v3/KEY"), and the text of the
    error went on into the delivery's pause detail and last error (the worker status page,
    the staff API, the database), the "delivery paused" ERROR line, the alert's mail and
    webhook, and the Celery task's result line: a hosted node's API key with them. The
    error is raised again, of its type (the classification in revenue.chain.errors reads
    types and words), with the URL's secret parts hidden and without the original attached."""

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        failure: requests.RequestException | None = None
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            text = _node_uri_hidden(str(exc), str(url))
            try:
                failure = type(exc)(text, request=exc.request, response=exc.response)
            except TypeError:  # a subclass with a constructor of its own
                failure = requests.RequestException(text, request=exc.request, response=exc.response)
        if failure is not None:
            raise failure  # outside the handler: the original (its text) is not its context
        # raise_for_status() names response.url: a 401 or 429 from a hosted node.
        response.url = node_uri_redacted(str(url))
        return response


def connect(*, provider_uri: str | None, timeout: float = DEFAULT_HTTP_TIMEOUT) -> Web3:
    """A ``Web3`` for ``provider_uri``.

    ``None`` or ``''``: a fresh in-process eth-tester chain (py-evm backend) with
    unlocked, funded dev accounts. ``http(s)://...``: an ``HTTPProvider`` with a
    short ``timeout`` (seconds) and no automatic retries, so a dead node surfaces
    quickly as ``ChainUnavailable``/``transient`` and the caller decides on retries.
    """
    if not provider_uri:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider

        return Web3(EthereumTesterProvider(EthereumTester(backend=PyEVMBackend())))
    if provider_uri.startswith(("http://", "https://")):
        session = _NodeSession()
        # The node is the platform's own (usually on loopback): skip requests' scan of
        # the proxy variables on every call, a measurable share of a delivery cycle.
        session.trust_env = False
        provider = HTTPProvider(
            provider_uri,
            request_kwargs={"timeout": timeout},
            session=session,
            exception_retry_configuration=None,
            # web3 asks for the chain id before most calls; it never changes for a node.
            cache_allowed_requests=True,
            cacheable_requests={RPCEndpoint("eth_chainId")},
        )
        return Web3(provider)
    raise ValueError(f"unsupported provider_uri (need http(s):// or empty): {node_uri_redacted(provider_uri)!r}")


def is_eth_tester(w3: Web3) -> bool:
    return type(w3.provider).__name__ == "EthereumTesterProvider"


@contextlib.contextmanager
def _translate_transient() -> Iterator[None]:
    """Re-raise transport failures as ChainUnavailable and "not now" answers as TransientChainError."""
    try:
        yield
    except ChainError:
        raise
    except Exception as exc:
        if is_connection_failure(exc):
            raise ChainUnavailable(f"chain node unavailable: {type(exc).__name__}: {exc}") from exc
        if classify_error(exc) == "transient":
            raise TransientChainError(error_message(exc)) from exc
        raise


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    with _translate_transient():
        return w3.manager.request_blocking(RPCEndpoint(method), params)


# --------------------------------------------------------------------------- signers


@dataclass(frozen=True, repr=False)
class Signer:
    """The platform signer: a local eth_account key. Its repr never shows the key."""

    account: LocalAccount

    @property
    def address(self) -> ChecksumAddress:
        return self.account.address

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"


def signer_from_key(private_key_hex: str) -> Signer:
    """Production signer from a hex private key the caller read from its environment/secret store."""
    key = private_key_hex.strip()
    if not key:
        raise ValueError("empty private key")
    try:
        account: LocalAccount = Account.from_key(key)
    except Exception as exc:
        # never chain the original error: its text could echo key material into logs
        raise ValueError(f"invalid private key ({type(exc).__name__})") from None
    return Signer(account)


def _account(signer: Signer | LocalAccount) -> LocalAccount:
    return signer.account if isinstance(signer, Signer) else signer


def dev_signer_fund(w3: Web3, *, amount_wei: int) -> LocalAccount:
    """A fresh random account (never persisted) funded by the node's own dev faucet.

    eth-tester: a transfer from its unlocked ``w3.eth.accounts[0]``. anvil:
    ``anvil_setBalance`` (no transaction needed, works with automine off); nodes
    without it (geth --dev, hardhat) fall back to a transfer from their first
    unlocked account.
    """
    if amount_wei < 0:
        raise ValueError("amount_wei must be >= 0")
    account: LocalAccount = Account.create()  # os.urandom entropy; the key lives only in memory
    if amount_wei == 0:
        return account
    if not is_eth_tester(w3):
        try:
            _rpc(w3, "anvil_setBalance", [account.address, hex(amount_wei)])
            return account
        except ChainUnavailable:
            raise
        except Exception:  # noqa: S110 - not anvil: use the unlocked-account transfer below
            pass
    with _translate_transient():
        funder = w3.eth.accounts[0]
        tx_hash = w3.eth.send_transaction({"from": funder, "to": account.address, "value": Wei(amount_wei)})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.05)
    if receipt["status"] != 1:
        raise FatalChainError(f"funding transfer failed: {tx_hash.to_0x_hex()}")
    return account


# --------------------------------------------------------------------------- fees


def suggest_fees(w3: Web3) -> tuple[int, int]:
    """``(max_fee_per_gas, max_priority_fee_per_gas)`` for a transaction sent now.

    priority = the node's ``eth_maxPriorityFeePerGas`` (1 gwei if unsupported);
    max fee = 2 x base fee + priority, where the base fee is the higher of the
    latest and the pending block's; that survives six full blocks of base-fee
    growth (12.5% each) before the transaction becomes unmineable.
    """
    with _translate_transient():
        base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
        try:  # the pending block knows the next base fee (incl. node overrides)
            base_fee = max(base_fee, int(w3.eth.get_block("pending").get("baseFeePerGas") or 0))
        except Exception as exc:
            if is_connection_failure(exc):
                raise
    return fees_for(base_fee=base_fee, priority=priority_fee_suggested(w3))


def priority_fee_suggested(w3: Web3) -> int:
    """The node's ``eth_maxPriorityFeePerGas`` (1 gwei if unsupported), at least 1 wei."""
    with _translate_transient():
        try:
            priority = int(w3.eth.max_priority_fee)
        except Exception as exc:
            if is_connection_failure(exc):
                raise
            priority = FALLBACK_PRIORITY_FEE
    return max(priority, 1)


def fees_for(*, base_fee: int, priority: int) -> tuple[int, int]:
    """``(max_fee, priority)`` surviving six full blocks of base-fee growth: 2 x base + priority."""
    return 2 * base_fee + priority, priority


def bump_fees(
    old_max_fee: int, old_priority_fee: int, *, percent: Decimal | int = DEFAULT_BUMP_PERCENT
) -> tuple[int, int]:
    """Fees for a same-nonce replacement: both raised by ``percent`` (>= 10), rounded up.

    Nodes accept a replacement only when max fee AND priority fee rise by at least
    10%; the default 12.5% leaves room for rounding. Each fee rises by at least
    1 wei, and the max fee never ends below the priority fee.
    """
    pct = Decimal(percent)
    if not pct.is_finite() or pct < MIN_BUMP_PERCENT:
        raise ValueError(f"a replacement needs a bump of at least {MIN_BUMP_PERCENT}%, got {percent}")
    if old_max_fee < 0 or old_priority_fee < 0:
        raise ValueError("fees must be >= 0")
    factor = 1 + pct / 100

    def up(value: int) -> int:
        return max(value + 1, math.ceil(Decimal(value) * factor))

    new_priority = up(old_priority_fee)
    new_max = max(up(old_max_fee), new_priority)
    return new_max, new_priority


# --------------------------------------------------------------------------- contract


@functools.cache
def _default_artifact() -> Artifact:
    # Read (and checked against the source) once per process, not on every call.
    return load_artifact()


def reserve_contract(w3: Web3, address: str, *, artifact: Artifact | None = None) -> Contract:
    if artifact is None:
        return _reserve_contract(w3, Web3.to_checksum_address(address))
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)


@functools.lru_cache(maxsize=32)
def _reserve_contract(w3: Web3, address: ChecksumAddress) -> Contract:
    # Building a web3 Contract parses the ABI (tens of ms): once per node connection and address.
    return w3.eth.contract(address=address, abi=_default_artifact().abi)


@functools.cache
def _deliver_abi() -> tuple[bytes, tuple[str, ...]]:
    """The selector and argument types of ``deliver``, from the artifact's ABI."""
    function = next(
        item for item in _default_artifact().abi if item.get("type") == "function" and item.get("name") == "deliver"
    )
    types = tuple(str(argument["type"]) for argument in function["inputs"])
    return keccak(text=f"deliver({','.join(types)})")[:4], types


def _base_tx(
    w3: Web3,
    *,
    sender: str,
    nonce: int,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
    value: int,
    data: str,
    to: str | None,
    gas: int | None,
) -> dict[str, Any]:
    if nonce < 0:
        raise ValueError("nonce must be >= 0")
    if max_priority_fee_per_gas < 0 or max_fee_per_gas < max_priority_fee_per_gas:
        raise ValueError("need 0 <= max_priority_fee_per_gas <= max_fee_per_gas")
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": None,
        "from": Web3.to_checksum_address(sender),
        "nonce": nonce,
        "value": value,
        "data": data,
        "maxFeePerGas": max_fee_per_gas,
        "maxPriorityFeePerGas": max_priority_fee_per_gas,
    }
    if to is not None:
        tx["to"] = Web3.to_checksum_address(to)
    with _translate_transient():
        tx["chainId"] = int(w3.eth.chain_id)
        if gas is None:
            probe: dict[str, Any] = {"from": tx["from"], "value": value, "data": data}
            if to is not None:
                probe["to"] = tx["to"]
            estimate = w3.eth.estimate_gas(cast(TxParams, probe))
            gas = math.ceil(Decimal(estimate) * GAS_ESTIMATE_MARGIN)
    if gas <= 0:
        raise ValueError("gas must be positive")
    tx["gas"] = gas
    return tx


def wait_for_receipt(w3: Web3, tx_hash: str, *, timeout: float = 120.0) -> TxReceipt:
    with _translate_transient():
        return w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=timeout, poll_latency=0.05)


def deploy_reserve(w3: Web3, *, signer: Signer | LocalAccount, timeout: float = 120.0) -> str:
    """Deploy HolderReserve from ``signer`` (it becomes the contract's signer); returns its checksum address.

    Waits for the receipt (needs a mining node: automine or interval mining).
    """
    account = _account(signer)
    art = load_artifact()
    with _translate_transient():
        nonce = w3.eth.get_transaction_count(account.address, "pending")
    max_fee, priority = suggest_fees(w3)
    tx = _base_tx(
        w3,
        sender=account.address,
        nonce=nonce,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        value=0,
        data=art.bytecode,
        to=None,
        gas=None,
    )
    tx_hash = sign_and_send(w3, signer=account, tx=tx)
    receipt = wait_for_receipt(w3, tx_hash, timeout=timeout)
    if receipt["status"] != 1 or not receipt.get("contractAddress"):
        raise FatalChainError(f"HolderReserve deployment failed: {tx_hash}")
    return Web3.to_checksum_address(cast(str, receipt["contractAddress"]))


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class DeliveryItem:
    """One on-chain item: ``amount_wei`` into stream ``stream_id`` under ``item_id``
    (a revenue event's id, or a dust bundle's id); the contract pays an id at most once."""

    item_id: int
    stream_id: int
    amount_wei: int

    def __post_init__(self) -> None:
        for name in ("item_id", "stream_id", "amount_wei"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be int, not {type(value).__name__}")
        if not 0 <= self.item_id < 2**256:
            raise ValueError(f"item_id out of uint256 range: {self.item_id}")
        if not 0 <= self.stream_id < NUM_STREAMS:
            raise ValueError(f"stream_id must be in [0, {NUM_STREAMS}): {self.stream_id}")
        if not 0 <= self.amount_wei < 2**256:
            raise ValueError(f"amount_wei out of uint256 range: {self.amount_wei}")


def encode_deliver_call(items: Sequence[DeliveryItem]) -> str:
    """ABI-encoded calldata of ``deliver(item_ids, stream_ids, amounts)``."""
    if not items:
        raise ValueError("a delivery needs at least one item")
    if len(items) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} items per delivery, got {len(items)}")
    # eth_abi directly: web3's Contract.encode_abi validates and normalizes each of the
    # 3 x 200 arguments of a full batch, a large share of a delivery cycle's CPU.
    selector, types = _deliver_abi()
    arguments = (
        [item.item_id for item in items],
        [item.stream_id for item in items],
        [item.amount_wei for item in items],
    )
    return "0x" + (selector + eth_abi.encode(types, arguments)).hex()


def build_delivery_tx(
    w3: Web3,
    *,
    contract_address: str,
    signer_address: str,
    items: Sequence[DeliveryItem],
    nonce: int,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
    gas: int | None = None,
) -> dict[str, Any]:
    """An unsigned EIP-1559 ``deliver`` transaction with value = sum of the amounts.

    ``gas=None`` estimates it (x1.25); the estimate simulates the call, so a paused
    contract or a refused signer fails here (``operator_cause``). Pass ``gas``
    explicitly to build without touching the node's state (a replacement).
    """
    data = encode_deliver_call(items)
    return _base_tx(
        w3,
        sender=signer_address,
        nonce=nonce,
        max_fee_per_gas=max_fee_per_gas,
        max_priority_fee_per_gas=max_priority_fee_per_gas,
        value=sum(item.amount_wei for item in items),
        data=data,
        to=contract_address,
        gas=gas,
    )


def build_self_transfer_tx(
    w3: Web3, *, signer_address: str, nonce: int, max_fee_per_gas: int, max_priority_fee_per_gas: int
) -> dict[str, Any]:
    """A 0-value transfer to oneself at ``nonce``: it fills a nonce gap that keeps later
    transactions of the signer from being mined, and does nothing else."""
    return _base_tx(
        w3,
        sender=signer_address,
        nonce=nonce,
        max_fee_per_gas=max_fee_per_gas,
        max_priority_fee_per_gas=max_priority_fee_per_gas,
        value=0,
        data="0x",
        to=signer_address,
        gas=SELF_TRANSFER_GAS,
    )


def build_reserve_call_tx(
    w3: Web3,
    *,
    contract_address: str,
    sender_address: str,
    function: str,
    args: Sequence[Any],
    nonce: int,
    max_fee_per_gas: int,
    max_priority_fee_per_gas: int,
    gas: int = 100_000,
) -> dict[str, Any]:
    """An unsigned call of one of the reserve's owner functions (``set_signer``,
    ``set_paused``, ``set_owner``), with explicit gas: a refusal is mined, not simulated."""
    data = reserve_contract(w3, contract_address).encode_abi(function, args=list(args))
    return _base_tx(
        w3,
        sender=sender_address,
        nonce=nonce,
        max_fee_per_gas=max_fee_per_gas,
        max_priority_fee_per_gas=max_priority_fee_per_gas,
        value=0,
        data=data,
        to=contract_address,
        gas=gas,
    )


class SignedTx(NamedTuple):
    raw_transaction: bytes
    tx_hash: str  # 0x-prefixed; known before broadcast, so it can be persisted first


def sign_tx(signer: Signer | LocalAccount, tx: dict[str, Any]) -> SignedTx:
    """Sign locally. ``tx['from']``, if present, must be the signer's address."""
    account = _account(signer)
    unsigned = dict(tx)
    sender = unsigned.pop("from", None)
    if sender is not None and Web3.to_checksum_address(sender) != account.address:
        raise ValueError(f"tx is from {sender}, signer is {account.address}")
    for field in ("nonce", "chainId", "gas", "maxFeePerGas", "maxPriorityFeePerGas"):
        if unsigned.get(field) is None:
            raise ValueError(f"tx lacks explicit {field}")
    signed = account.sign_transaction(unsigned)
    return SignedTx(bytes(signed.raw_transaction), signed.hash.to_0x_hex())


def send_signed(w3: Web3, signed: SignedTx) -> str:
    """Broadcast a signed transaction; idempotent for the same bytes.

    Re-broadcasting (e.g. after the node dropped it, or after a timeout whose
    outcome is unknown) returns the hash when the node says "already known", or
    "nonce too low" while this very transaction has a receipt.
    """
    try:
        with _translate_transient():
            return HexBytes(w3.eth.send_raw_transaction(signed.raw_transaction)).to_0x_hex()
    except TransientChainError as exc:
        if isinstance(exc, ChainUnavailable):
            raise
        text = str(exc).lower()
        if any(marker in text for marker in ALREADY_KNOWN_MESSAGES):
            return signed.tx_hash
        if is_nonce_too_low(exc) and receipt_or_none(w3, signed.tx_hash) is not None:
            return signed.tx_hash
        raise


def sign_and_send(w3: Web3, *, signer: Signer | LocalAccount, tx: dict[str, Any]) -> str:
    """Sign ``tx`` locally and broadcast it with ``eth_sendRawTransaction``; returns the 0x tx hash."""
    return send_signed(w3, sign_tx(signer, tx))


def chain_items_paid(w3: Web3, address: str, *, block_identifier: BlockIdentifier = "latest") -> int:
    """How many item ids the reserve has paid (each exactly once)."""
    contract = reserve_contract(w3, address)
    with _translate_transient():
        return int(contract.functions.items_paid().call(block_identifier=block_identifier))


def item_paid(w3: Web3, address: str, item_id: int) -> bool:
    """Whether the reserve's bitmap holds ``item_id`` as paid."""
    contract = reserve_contract(w3, address)
    with _translate_transient():
        return bool(contract.functions.is_paid(item_id).call())


def items_paid_among(w3: Web3, address: str, item_ids: Sequence[int]) -> list[int]:
    """Which of ``item_ids`` the reserve's bitmap holds as paid, at the latest block: one
    JSON-RPC batch over HTTP (a batch of 256 items is one round trip, not 256)."""
    contract = reserve_contract(w3, address)
    if is_eth_tester(w3) or not item_ids:
        return [item for item in item_ids if item_paid(w3, address, item)]
    with _translate_transient(), w3.batch_requests() as batch:
        for item in item_ids:
            batch.add(contract.functions.is_paid(item))
        answers = batch.execute()
    return [item for item, paid in zip(item_ids, answers, strict=True) if paid]


def receipt_or_none(w3: Web3, tx_hash: str) -> TxReceipt | None:
    """The receipt if the transaction is mined in the node's current canonical chain, else None.

    Over HTTP only the fields the delivery reads are decoded (status, blockNumber,
    blockHash, transactionHash, gasUsed, effectiveGasPrice, contractAddress; no
    ``logs``): web3's formatters over a 200-event batch's logs cost more than the
    call itself.
    """
    if is_eth_tester(w3):
        with _translate_transient():
            try:
                return w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None
    raw = _raw_result(w3, "eth_getTransactionReceipt", [tx_hash])
    if not raw:
        return None
    contract_address = raw.get("contractAddress")
    return cast(
        TxReceipt,
        AttributeDict(
            {
                "status": int(raw["status"], 16),
                "blockNumber": int(raw["blockNumber"], 16),
                "blockHash": HexBytes(raw["blockHash"]),
                "transactionHash": HexBytes(raw["transactionHash"]),
                "gasUsed": int(raw["gasUsed"], 16),
                "effectiveGasPrice": int(raw.get("effectiveGasPrice") or "0x0", 16),
                "contractAddress": Web3.to_checksum_address(contract_address) if contract_address else None,
            }
        ),
    )


def _raw_result(w3: Web3, method: str, params: list[Any]) -> Any:
    """One JSON-RPC call answered as raw JSON (no web3 result formatters)."""
    with _translate_transient():
        response = w3.provider.make_request(RPCEndpoint(method), params)
        if response.get("error"):
            raise ValueError(response["error"])
    return response.get("result")


def confirmations(w3: Web3, receipt: TxReceipt) -> int:
    """Blocks on top of (and including) the receipt's block; 0 if that block left the canonical chain."""
    block_number = receipt.get("blockNumber")
    if block_number is None:
        return 0
    with _translate_transient():
        head = w3.eth.block_number
    if head < block_number or block_hash_at(w3, block_number) != HexBytes(receipt["blockHash"]).to_0x_hex():
        return 0
    return int(head - block_number + 1)


def block_hash_at(w3: Web3, number: int) -> str | None:
    """The hash of the canonical block ``number`` (0x hex), None if the chain is shorter.

    Only the node's answer "no such block" is None: an error answer (a lagging backend's
    "header not found", a rate limit) says nothing about the chain and is raised, so that
    the scan never takes it for a reorg (or for broken finality)."""
    with _translate_transient():
        try:
            block = w3.eth.get_block(number)
        except BlockNotFound:
            return None
    return HexBytes(block["hash"]).to_0x_hex()


def finalized_block_number(w3: Web3) -> int | None:
    """The node's ``finalized`` block, None when it has no such tag."""
    with _translate_transient():
        try:
            block = w3.eth.get_block("finalized")
        except Exception as exc:
            if is_connection_failure(exc):
                raise
            return None
    return int(block["number"])


def node_chain_id(w3: Web3) -> int:
    """The node's chain id, asked now: web3 caches ``eth_chainId`` per provider, and a
    node replaced behind the same address must be noticed."""
    if is_eth_tester(w3):
        return int(w3.eth.chain_id)
    provider = w3.provider
    cached = bool(getattr(provider, "cache_allowed_requests", False))
    try:
        if cached:
            provider.cache_allowed_requests = False
        return int(_raw_result(w3, "eth_chainId", []), 16)
    finally:
        if cached:
            provider.cache_allowed_requests = True


class PaymentLog(NamedTuple):
    """One ``Delivered`` (paid) or ``Refused`` (already paid, refunded) log of the reserve."""

    item_id: int
    paid: bool
    stream_id: int | None  # None for Refused
    amount: int
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int


def _hex(value: Any) -> str:
    return value if isinstance(value, str) else HexBytes(value).to_0x_hex()


def _number(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _payment_log(raw: Any) -> PaymentLog:
    topics = [_hex(topic) for topic in raw["topics"]]
    data = bytes(HexBytes(raw["data"]))
    paid = topics[0] == DELIVERED_TOPIC
    return PaymentLog(
        item_id=int(topics[1], 16),
        paid=paid,
        stream_id=int.from_bytes(data[:32], "big") if paid else None,
        amount=int.from_bytes(data[32:64] if paid else data[:32], "big"),
        tx_hash=_hex(raw["transactionHash"]),
        block_number=_number(raw["blockNumber"]),
        block_hash=_hex(raw["blockHash"]),
        log_index=_number(raw["logIndex"]),
    )


def payment_logs(
    w3: Web3, address: str, from_block: int, to_block: BlockIdentifier, *, max_blocks: int = 2_000
) -> list[PaymentLog]:
    """The reserve's ``Delivered`` and ``Refused`` logs in ``[from_block, to_block]``, in
    chain order, asked ``max_blocks`` blocks at a time (hosted nodes cap a log query's range).
    Decoded by hand: web3's log formatters cost more than the call on a 200-item batch."""
    if max_blocks < 1:
        raise ValueError("max_blocks must be >= 1")
    if not isinstance(to_block, int):
        with _translate_transient():
            to_block = int(w3.eth.get_block(to_block)["number"])
    checksum = Web3.to_checksum_address(address)
    found: list[PaymentLog] = []
    start = max(0, from_block)
    while start <= to_block:
        end = min(to_block, start + max_blocks - 1)
        query = {
            "address": checksum,
            "fromBlock": hex(start),
            "toBlock": hex(end),
            "topics": [[DELIVERED_TOPIC, REFUSED_TOPIC]],
        }
        if is_eth_tester(w3):
            with _translate_transient():
                raw_logs: Any = w3.eth.get_logs(cast(Any, dict(query, fromBlock=start, toBlock=end)))
        else:
            raw_logs = _raw_result(w3, "eth_getLogs", [query]) or []
        found.extend(_payment_log(raw) for raw in raw_logs if not raw.get("removed"))
        start = end + 1
    found.sort(key=lambda log: (log.block_number, log.log_index))
    return found


def delivered_logs(
    w3: Web3, address: str, from_block: int, to_block: BlockIdentifier, *, max_blocks: int = 2_000
) -> list[PaymentLog]:
    """The ``Delivered`` logs only: every item the reserve paid, each once, in chain order."""
    return [log for log in payment_logs(w3, address, from_block, to_block, max_blocks=max_blocks) if log.paid]


def explain_failed_receipt(w3: Web3, receipt: TxReceipt) -> BaseException | None:
    """For a mined but reverted transaction, the revert as an exception (None if it succeeded).

    Replays the call against the state after the receipt's block (nodes keep no
    revert reason in receipts); feed the result to ``classify_error`` and
    ``operator_cause``. A replay that no longer reverts gives ``FatalChainError``.
    """
    if receipt["status"] == 1:
        return None
    with _translate_transient():
        tx = w3.eth.get_transaction(receipt["transactionHash"])
        call: dict[str, Any] = {
            "from": tx["from"],
            "to": tx["to"],
            "value": tx["value"],
            "data": tx["input"],
            "gas": tx["gas"],
        }
        try:
            w3.eth.call(cast(TxParams, call), block_identifier=receipt["blockNumber"])
        except ChainError:
            raise
        except Exception as exc:
            if is_connection_failure(exc):
                raise
            return exc
    return FatalChainError(f"transaction {HexBytes(receipt['transactionHash']).to_0x_hex()} reverted")


@dataclass(frozen=True)
class ContractHealth:
    """What the reserve says about delivering from ``signer``."""

    code_present: bool
    paused: bool
    signer_allowed: bool
    compatible: bool = True  # answers this version's views (an older HolderReserve does not)

    def fault(self) -> OperatorFault | None:
        if not self.code_present:
            return OperatorFault(PauseCause.CONTRACT_MISSING, "no contract code at the reserve's address")
        if not self.compatible:
            return OperatorFault(
                PauseCause.CONTRACT_MISSING,
                "the contract at the reserve's address is not this version of HolderReserve: "
                "run `chain_deploy --replace`",
            )
        if self.paused:
            return OperatorFault(PauseCause.CONTRACT_PAUSED, "the reserve is paused by its owner")
        if not self.signer_allowed:
            return OperatorFault(PauseCause.SIGNER_REFUSED, "the reserve does not accept the platform's signer")
        return None


def contract_health(w3: Web3, address: str, signer_address: str) -> ContractHealth:
    """Code present, paused flag and the signer's authorisation, read from the node."""
    checksum = Web3.to_checksum_address(address)
    with _translate_transient():
        if not bytes(w3.eth.get_code(checksum)):
            return ContractHealth(code_present=False, paused=False, signer_allowed=False)
        functions = reserve_contract(w3, checksum).functions
        try:
            paused = bool(functions.paused().call())
            allowed = bool(functions.signers(Web3.to_checksum_address(signer_address)).call())
        except Exception as exc:
            if is_connection_failure(exc) or classify_error(exc) == "transient":
                raise
            return ContractHealth(code_present=True, paused=False, signer_allowed=False, compatible=False)
    return ContractHealth(code_present=True, paused=paused, signer_allowed=allowed)


def chain_status(w3: Web3, *, contract_address: str | None = None, signer_address: str | None = None) -> dict[str, Any]:
    """A health snapshot that never raises.

    Keys: connected, chain_id, block_number, signer_balance_wei, items_paid,
    error (None when everything answered). Unanswered values are None.
    """
    status: dict[str, Any] = {
        "connected": False,
        "chain_id": None,
        "block_number": None,
        "signer_balance_wei": None,
        "items_paid": None,
        "error": None,
    }
    try:
        status["chain_id"] = int(w3.eth.chain_id)
        status["block_number"] = int(w3.eth.block_number)
        status["connected"] = True
        if signer_address:
            status["signer_balance_wei"] = int(w3.eth.get_balance(Web3.to_checksum_address(signer_address)))
        if contract_address:
            status["items_paid"] = chain_items_paid(w3, contract_address)
    except Exception as exc:
        status["error"] = f"{type(exc).__name__}: {exc}"[:500]
    return status
