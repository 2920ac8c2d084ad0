"""Chain error family and ``classify_error``.

Every failure the delivery primitives can raise falls into one of three kinds:

``transient``
    The node could not be reached or answered "try again" (connection refused,
    timeouts, HTTP 429/5xx, "already known", "replacement transaction
    underpriced", "nonce too low", ...). Nothing about the batch is wrong: re-read
    the chain (sequence, receipts, nonce) and retry later.
``already_delivered``
    The contract refused the batch because its first sequence is below
    ``next_sequence``: an earlier transaction delivered it. Reconcile from the
    chain (``delivered_logs``) and never send it again.
``fatal``
    Everything else (other reverts such as "not signer", "sequence gap",
    "value mismatch"; insufficient funds; malformed input). Needs a human or a
    code fix; retrying the same transaction will not help.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

ErrorKind = Literal["transient", "already_delivered", "fatal"]

ALREADY_DELIVERED_REASON = "already delivered"

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

_REVERT_MARKERS = ("revert", "transactionfailed", "contractlogicerror")


ALREADY_KNOWN_MESSAGES = ("already known", "known transaction", "already imported")


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


class AlreadyDelivered(ChainError):
    """The reserve contract already holds this batch (its sequence is behind)."""


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
    try:
        from web3.exceptions import ProviderConnectionError, RequestTimedOut, TimeExhausted, TooManyRequests
    except ImportError:  # pragma: no cover - web3 is a hard dependency
        return False
    return isinstance(exc, ProviderConnectionError | RequestTimedOut | TimeExhausted | TooManyRequests)


def is_connection_failure(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) says the node could not be reached in time."""
    return any(isinstance(e, ChainUnavailable) or _is_connection_failure(e) for e in _chain(exc))


def classify_error(exc: BaseException) -> ErrorKind:
    """Map any exception from a chain call to ``transient``, ``already_delivered`` or ``fatal``."""
    links = list(_chain(exc))
    for link in links:
        if isinstance(link, AlreadyDelivered):
            return "already_delivered"
        if isinstance(link, FatalChainError):
            return "fatal"
        if isinstance(link, TransientChainError):
            return "transient"
    for link in links:
        text = _text(link)
        if ALREADY_DELIVERED_REASON in text and any(m in text for m in _REVERT_MARKERS):
            return "already_delivered"
    for link in links:
        if _is_connection_failure(link):
            return "transient"
        text = _text(link)
        if any(m in text for m in _REVERT_MARKERS):
            return "fatal"
        if any(m in text for m in _TRANSIENT_MESSAGES):
            return "transient"
    return "fatal"
