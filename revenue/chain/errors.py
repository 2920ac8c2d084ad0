"""Chain error family, ``classify_error`` and the causes that pause delivery.

Every failure the delivery primitives can raise falls into one of three kinds:

``transient``
    The node could not be reached or answered "try again" (connection refused,
    timeouts, HTTP 429/5xx, "already known", "replacement transaction
    underpriced", "nonce too low", ...). Nothing about the batch is wrong: re-read
    the chain (receipts, nonce, logs) and retry later.
``operator``
    Something only an operator can fix, that no revenue event is to blame for: the
    signer has no funds, the contract refuses the signer or is paused. Delivery
    pauses with the cause (``operator_cause``) and resumes by itself once it is gone;
    no event's attempts are consumed.
``fatal``
    Everything else (other reverts such as "value mismatch" or "bad stream";
    malformed input). Retrying the same transaction will not help.

The contract never reverts for an item that is already paid: it skips it and logs
``Refused`` (see HolderReserve.vy), so "already delivered" is not an error any more.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Literal

from web3.exceptions import ProviderConnectionError, RequestTimedOut, TimeExhausted, TooManyRequests

ErrorKind = Literal["transient", "operator", "fatal"]


class PauseCause(StrEnum):
    """Why delivery stopped sending: operator-level faults, never an event's fault.
    The price causes are raised by revenue.delivery; the others come from the chain."""

    NODE_UNREACHABLE = "node_unreachable"
    WRONG_CHAIN_ID = "wrong_chain_id"
    NOT_CONFIGURED = "not_configured"  # no signer or no deployment for the node's chain
    CONTRACT_MISSING = "contract_missing"
    CONTRACT_PAUSED = "contract_paused"
    SIGNER_REFUSED = "signer_refused"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    FEES_ABOVE_CAP = "fees_above_cap"
    PRICE_UNAVAILABLE = "price_unavailable"
    PRICE_OUT_OF_BOUNDS = "price_out_of_bounds"


# Node answers that mean "not now" rather than "never" (geth, anvil, reth, erigon wording).
_TRANSIENT_MESSAGES = (
    "already known",
    "known transaction",
    "already imported",
    "replacement transaction underpriced",
    "transaction underpriced",
    "nonce too low",
    "nonce too high",
    "max fee per gas less than block base fee",
    "fee cap less than block base fee",
    "txpool is full",
    "header not found",
    "request timed out",
    "timeout",
    "too many requests",
    "rate limit",
    "service unavailable",
    "bad gateway",
    "connection refused",
)

# A transaction priced too low to enter the pool or a block: re-sign with higher fees.
UNDERPRICED_MESSAGES = (
    "replacement transaction underpriced",
    "transaction underpriced",
    "max fee per gas less than block base fee",
    "fee cap less than block base fee",
    "feecap too low",
    "gas price too low",
)

ALREADY_KNOWN_MESSAGES = ("already known", "known transaction", "already imported")
NONCE_TOO_LOW_MESSAGES = ("nonce too low", "nonce has already been used")

# Operator-level refusals: (marker in the error text, cause).
_OPERATOR_MESSAGES = (
    ("not signer", PauseCause.SIGNER_REFUSED),
    ("execution reverted: paused", PauseCause.CONTRACT_PAUSED),
    ("reverted with reason string 'paused'", PauseCause.CONTRACT_PAUSED),
    ("insufficient funds", PauseCause.INSUFFICIENT_FUNDS),
    # The in-process chain's words for it (eth-tester on py-evm, `make run`): taken for the
    # batch's fault before, an attempt of each of its events used. "cannot afford txn gas" is
    # its refusal of the gas alone (its estimates ask for the block's whole gas limit: below
    # about 0.03 ETH, every batch), taken for the batch's fault until every event was critical.
    ("does not have enough balance to cover", PauseCause.INSUFFICIENT_FUNDS),
    ("cannot afford txn gas", PauseCause.INSUFFICIENT_FUNDS),
    # A node on another chain refusing the platform's EIP-155 signature (geth, anvil): not
    # the batch's fault; it may still be mined on its own chain.
    ("invalid chain id", PauseCause.WRONG_CHAIN_ID),
)

_REVERT_MARKERS = ("revert", "transactionfailed", "contractlogicerror")


def error_message(exc: BaseException) -> str:
    """The human message of an exception (web3 keeps it in ``.message``; ``str()`` may be a tuple repr)."""
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else str(exc)


class ChainError(Exception):
    """Base of the errors raised by ``revenue.chain``."""


class TransientChainError(ChainError):
    """Retry later; the request itself was fine."""


class ChainUnavailable(TransientChainError):
    """The node is unreachable or timed out."""


class OperatorFault(ChainError):
    """Delivery cannot go on until an operator acts (or the condition passes): pause."""

    def __init__(self, cause: PauseCause, detail: str) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause
        self.detail = detail


class FatalChainError(ChainError):
    """Retrying will not help."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _text(exc: BaseException) -> str:
    parts = [type(exc).__name__, str(exc)]
    for attr in ("message", "data", "rpc_response"):
        value = getattr(exc, attr, None)
        if value is not None:
            parts.append(str(value))
    return " ".join(parts).lower()


def _is_connection_failure(exc: BaseException) -> bool:
    # requests.ConnectionError / requests.Timeout / urllib3 errors are OSError subclasses,
    # as are the builtin ConnectionError and TimeoutError (and asyncio.TimeoutError).
    if isinstance(exc, OSError | TimeoutError):
        return True
    return isinstance(exc, ProviderConnectionError | RequestTimedOut | TimeExhausted | TooManyRequests)


def is_connection_failure(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) says the node could not be reached in time."""
    return any(isinstance(e, ChainUnavailable) or _is_connection_failure(e) for e in _chain(exc))


def _mentions(exc: BaseException, markers: tuple[str, ...]) -> bool:
    return any(marker in _text(link) for link in _chain(exc) for marker in markers)


def is_underpriced(exc: BaseException) -> bool:
    """The node refused a transaction as priced too low (below the base fee, or not
    enough above the transaction it would replace)."""
    return _mentions(exc, UNDERPRICED_MESSAGES)


def is_nonce_too_low(exc: BaseException) -> bool:
    return _mentions(exc, NONCE_TOO_LOW_MESSAGES)


def operator_cause(exc: BaseException) -> PauseCause | None:
    """The operator-level cause behind ``exc``, if it is one."""
    for link in _chain(exc):
        if isinstance(link, OperatorFault):
            return link.cause
    for link in _chain(exc):
        text = _text(link)
        for marker, cause in _OPERATOR_MESSAGES:
            if marker in text:
                return cause
    return None


def classify_error(exc: BaseException) -> ErrorKind:
    """Map any exception from a chain call to ``transient``, ``operator`` or ``fatal``."""
    links = list(_chain(exc))
    for link in links:
        if isinstance(link, OperatorFault):
            return "operator"
        if isinstance(link, FatalChainError):
            return "fatal"
        if isinstance(link, TransientChainError):
            return "transient"
    if operator_cause(exc) is not None:
        return "operator"
    for link in links:
        if _is_connection_failure(link):
            return "transient"
        text = _text(link)
        if any(m in text for m in _REVERT_MARKERS):
            return "fatal"
        if any(m in text for m in _TRANSIENT_MESSAGES):
            return "transient"
    return "fatal"
