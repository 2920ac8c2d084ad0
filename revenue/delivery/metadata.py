"""The one owner of a revenue event's metadata document (``RevenueEvent.metadata``).

Every key of the document is spelled here and nowhere else: writers get their patches
from the builders below (merged in SQL by ``revenue.jsonb.JsonMerge``), readers get
typed values from ``DeliveryMetadata`` or query expressions from the helpers. Imported
by web processes too: it needs Django only, never web3.

The delivery status is one of ``DeliveryStatus``: ``critical`` (attempts exhausted, or
no retry can help) is a status of its own, disjoint from ``failed``, so counting the
events by status adds up to the events.

Timestamps are fixed-width UTC ISO strings (``2026-11-24T16:04:05.123456+00:00``), so
comparing them as text in SQL compares the times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from django.db import connection
from django.db.models import IntegerField, Q, TextField, Value
from django.db.models.fields.json import KT, KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.db.models.lookups import Exact, In

FIELD = "metadata"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting to be sent (or carried forward as dust)
    SUBMITTED = "submitted"  # in a signed transaction, maybe mined, not yet confirmed
    DELIVERED = "delivered"  # paid by a transaction of the canonical chain, confirmed
    FAILED = "failed"  # an attempt failed; retried after a backoff
    CRITICAL = "critical"  # attempts exhausted or unconvertible: alerted, only staff re-queue it


# What the sender selects from; also the predicate of the partial index revenue_event_redrive.
WAITING_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
# What the failure report reads (failed, critical, stale pending): the predicate of the
# partial index revenue_event_attention, by creation time; each arm of the report's filter
# names statuses of it, so the planner can prove the index applies.
ATTENTION_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.CRITICAL, DeliveryStatus.PENDING)
# What staff may queue again.
RETRYABLE_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.CRITICAL)


class Key(StrEnum):
    """The document's keys. Delivery writes all but the first four."""

    TIMESTAMP = "timestamp"
    STREAM_NAME = "streamName"
    CORRELATION_ID = "correlationId"
    STATUS = "onChainDeliveryStatus"
    TX_HASH = "txHash"  # the latest broadcast of its batch; once delivered, the paying one
    NONCE = "nonce"
    BATCH_ID = "batchId"
    BUNDLE_ID = "bundleId"  # the dust bundle that carries it on-chain
    AMOUNT_WEI = "amountWei"  # string: wei exceed 2**53
    BLOCK_NUMBER = "blockNumber"
    BLOCK_HASH = "blockHash"
    DELIVERED_AT = "deliveredAt"
    RETRY_ATTEMPTS = "retryAttempts"
    LAST_ERROR = "lastError"
    LAST_FAILED_AT = "lastFailedAt"
    NEXT_RETRY_AT = "nextRetryAt"
    LAST_RETRY_AT = "lastRetryAt"
    ALERTED_AT = "alertedAt"
    REORGED_AT = "reorgedAt"
    MANUAL_RETRY_AT = "manualRetryAt"
    CARRIED_AT = "carriedAt"  # dust carried forward, waiting for its stream's bundle
    # Held: its item's amount is more than the signer can pay (HELD_CAUSE says why); left out
    # of every batch while held, released by the first batch whose budget it fits.
    HELD_AT = "heldAt"
    HELD_CAUSE = "heldCause"
    HELD_ALERTED_AT = "heldAlertedAt"  # its hold was alerted (kept: a hold again is not alerted)


# Keys of the transaction carrying an event: dropped when the event goes back to pending.
_TX_KEYS = (Key.TX_HASH, Key.NONCE, Key.BATCH_ID, Key.BLOCK_NUMBER, Key.BLOCK_HASH, Key.DELIVERED_AT)
# Keys of a hold: dropped when it is released, put in a transaction, or re-queued by staff.
_HELD_KEYS = (Key.HELD_AT, Key.HELD_CAUSE)

# Why an event is held (HELD_CAUSE): its share is more than the signer can pay.
HELD_FOR_FUNDS = "insufficient_funds"


def iso(moment: datetime) -> str:
    """Fixed-width UTC timestamps, so that comparing the strings in SQL compares the times."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------- lookups and expressions


def lookup(key: Key, suffix: str = "") -> str:
    """The ORM path of a key, e.g. ``lookup(Key.STATUS, "__in")``."""
    return f"{FIELD}__{key}{suffix}"


def text(key: Key) -> KeyTextTransform:
    """The key's value as text (``->>``)."""
    return KT(lookup(key))


def text_cast(key: Key) -> Cast:
    """The key's text for plain text comparisons (KT alone would take the JSON lookups,
    which decode the right-hand side); timestamps compare in time order."""
    return Cast(KT(lookup(key)), TextField())


def attempts_expression() -> Cast:
    return Cast(Coalesce(KT(lookup(Key.RETRY_ATTEMPTS)), Value("0")), IntegerField())


def status_expression() -> KeyTextTransform:
    return text(Key.STATUS)


def status_in(*statuses: DeliveryStatus) -> Q:
    """Events in one of ``statuses``: the key lookup, which the partial indexes' own
    predicates use (so the planner can match them)."""
    if len(statuses) == 1:
        return Q(**{lookup(Key.STATUS): str(statuses[0])})
    return Q(**{lookup(Key.STATUS, "__in"): [str(s) for s in statuses]})


def status_is(status: DeliveryStatus) -> Q:
    """One status, served by the status expression index: on PostgreSQL compare the
    ->> text (a jsonb -> comparison would scan every event); SQLite's JSON1 needs the
    key lookup."""
    if connection.vendor == "postgresql":
        return Q(Exact(status_expression(), str(status)))
    return status_in(status)


def status_among(*statuses: DeliveryStatus) -> Q:
    """Several statuses, served by the status expression index like ``status_is``: on
    PostgreSQL the ->> text in the list (the jsonb -> list would scan every event)."""
    if connection.vendor == "postgresql":
        return Q(In(status_expression(), [str(s) for s in statuses]))
    return status_in(*statuses)


def carried() -> Q:
    """Dust carried forward (the partial indexes' predicates spell it this way)."""
    return Q(**{f"{FIELD}__has_key": str(Key.CARRIED_AT)})


def not_carried() -> Q:
    return ~carried()


def held() -> Q:
    """Held: left out of every batch until its amount fits what the signer can pay (the
    partial index revenue_event_held's predicate spells it this way)."""
    return Q(**{f"{FIELD}__has_key": str(Key.HELD_AT)})


def not_held() -> Q:
    return ~held()


def held_alert_unclaimed() -> Q:
    return Q(**{lookup(Key.HELD_ALERTED_AT, "__isnull"): True})


def alert_unclaimed() -> Q:
    return Q(**{lookup(Key.ALERTED_AT, "__isnull"): True})


# --------------------------------------------------------------------------- documents and patches


def document_initial(
    *, timestamp: str, stream_name: str, correlation_id: str, source: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A new revenue event's document: waiting for delivery, no attempt yet. ``source``:
    the collector's own details of the source (e.g. its trade id), kept as given at the
    top level; they cannot override a key of this module."""
    document: dict[Any, Any] = dict(source or {})
    document.update(
        {
            Key.TIMESTAMP: timestamp,
            Key.STREAM_NAME: stream_name,
            Key.CORRELATION_ID: correlation_id,
            Key.STATUS: DeliveryStatus.PENDING,
            Key.RETRY_ATTEMPTS: 0,
        }
    )
    return _plain(document)


def _plain(patch: Mapping[Any, Any]) -> dict[str, Any]:
    """StrEnum keys and values as plain strings (what JSON serialisation writes anyway)."""
    return {str(key): (str(value) if isinstance(value, StrEnum) else value) for key, value in patch.items()}


def patch_submitted(*, batch_id: int, tx_hash: str, nonce: int, now: datetime) -> dict[str, Any]:
    return _plain(
        {
            Key.STATUS: DeliveryStatus.SUBMITTED,
            Key.TX_HASH: tx_hash,
            Key.NONCE: nonce,
            Key.BATCH_ID: batch_id,
            Key.LAST_RETRY_AT: iso(now),
            Key.NEXT_RETRY_AT: None,
            Key.CARRIED_AT: None,
            **dict.fromkeys(_HELD_KEYS),
        }
    )


def patch_amount(amount_wei: int | str) -> dict[str, Any]:
    return {Key.AMOUNT_WEI.value: str(amount_wei)}


def patch_bundled(*, bundle_id: int) -> dict[str, Any]:
    return _plain({Key.BUNDLE_ID: bundle_id, Key.CARRIED_AT: None})


def patch_carried(*, now: datetime) -> dict[str, Any]:
    """Dust carried forward: pending (its amount set per event by ``patch_amount``) until
    its stream's bundle forms."""
    return _plain({Key.STATUS: DeliveryStatus.PENDING, Key.CARRIED_AT: iso(now), Key.NEXT_RETRY_AT: None})


def patch_tx_hash(*, tx_hash: str, nonce: int) -> dict[str, Any]:
    return _plain({Key.TX_HASH: tx_hash, Key.NONCE: nonce})


def patch_paid_by(*, batch_id: int, tx_hash: str, nonce: int) -> dict[str, Any]:
    """Mined in a transaction of the canonical chain (not yet confirmed)."""
    return _plain(
        {
            Key.STATUS: DeliveryStatus.SUBMITTED,
            Key.BATCH_ID: batch_id,
            Key.TX_HASH: tx_hash,
            Key.NONCE: nonce,
            Key.NEXT_RETRY_AT: None,
            Key.CARRIED_AT: None,
            **dict.fromkeys(_HELD_KEYS),
        }
    )


def patch_delivered(
    *, batch_id: int, tx_hash: str, nonce: int, block_number: int, block_hash: str, now: datetime
) -> dict[str, Any]:
    return _plain(
        {
            Key.STATUS: DeliveryStatus.DELIVERED,
            Key.TX_HASH: tx_hash,
            Key.NONCE: nonce,
            Key.BLOCK_NUMBER: block_number,
            Key.BLOCK_HASH: block_hash,
            Key.DELIVERED_AT: iso(now),
            Key.BATCH_ID: batch_id,
            Key.LAST_ERROR: None,
            Key.NEXT_RETRY_AT: None,
        }
    )


def patch_unconfirmed(*, now: datetime) -> dict[str, Any]:
    """Its payment left the canonical chain: back in flight."""
    return _plain(
        {
            Key.STATUS: DeliveryStatus.SUBMITTED,
            Key.DELIVERED_AT: None,
            Key.BLOCK_NUMBER: None,
            Key.BLOCK_HASH: None,
            Key.REORGED_AT: iso(now),
        }
    )


def patch_returned(*, now: datetime | None = None, error: str | None = None) -> dict[str, Any]:
    """Back to pending, no transaction of its own (attempts kept)."""
    patch: dict[Any, Any] = {Key.STATUS: DeliveryStatus.PENDING, Key.NEXT_RETRY_AT: None}
    patch.update(dict.fromkeys(_TX_KEYS))
    if now is not None:
        patch[Key.REORGED_AT] = iso(now)
    if error is not None:
        patch[Key.LAST_ERROR] = error[:2000]
    return _plain(patch)


def patch_failed(*, attempts: int, error: str, now: datetime, next_retry_at: datetime | None) -> dict[str, Any]:
    """One more failed attempt; without a next retry the event is critical."""
    return _plain(
        {
            Key.STATUS: DeliveryStatus.FAILED if next_retry_at is not None else DeliveryStatus.CRITICAL,
            Key.RETRY_ATTEMPTS: attempts,
            Key.LAST_ERROR: error[:2000],
            Key.LAST_FAILED_AT: iso(now),
            Key.NEXT_RETRY_AT: iso(next_retry_at) if next_retry_at is not None else None,
        }
    )


def patch_given_up() -> dict[str, Any]:
    """Failed as many times as DELIVERY_MAX_ATTEMPTS allows (a limit lowered since): critical,
    its attempts and last error kept."""
    return _plain({Key.STATUS: DeliveryStatus.CRITICAL, Key.NEXT_RETRY_AT: None})


def patch_requeued(*, now: datetime) -> dict[str, Any]:
    """Staff: a fresh attempt budget."""
    return _plain(
        {
            Key.STATUS: DeliveryStatus.PENDING,
            Key.RETRY_ATTEMPTS: 0,
            Key.ALERTED_AT: None,
            Key.NEXT_RETRY_AT: None,
            Key.MANUAL_RETRY_AT: iso(now),
            # Looked at again at once (held again, unalerted, if it still does not fit).
            **dict.fromkeys((*_HELD_KEYS, Key.HELD_ALERTED_AT)),
        }
    )


def patch_held(*, now: datetime, cause: str, error: str) -> dict[str, Any]:
    """Held: its amount is more than the signer can pay (``cause``); ``error`` says how much
    against what. Its status and attempts are kept."""
    return _plain({Key.HELD_AT: iso(now), Key.HELD_CAUSE: cause, Key.LAST_ERROR: error[:2000]})


def patch_released() -> dict[str, Any]:
    """Its amount fits again: the next batches take it (its last error stays, for the record)."""
    return _plain(dict.fromkeys(_HELD_KEYS))


def patch_held_alert_claimed(*, now: datetime) -> dict[str, Any]:
    return {Key.HELD_ALERTED_AT.value: iso(now)}


def patch_alert_claimed(*, now: datetime) -> dict[str, Any]:
    return {Key.ALERTED_AT.value: iso(now)}


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class DeliveryMetadata:
    """Typed view of one event's document."""

    status: DeliveryStatus | None
    retry_attempts: int
    tx_hash: str | None
    nonce: int | None
    batch_id: int | None
    bundle_id: int | None
    amount_wei: int | None
    block_number: int | None
    block_hash: str | None
    delivered_at: str | None
    last_error: str | None
    last_failed_at: str | None
    next_retry_at: str | None
    last_retry_at: str | None
    alerted_at: str | None
    reorged_at: str | None
    carried_at: str | None
    held_at: str | None
    held_cause: str | None
    held_alerted_at: str | None
    correlation_id: str | None
    stream_name: str | None
    timestamp: str | None

    @classmethod
    def of(cls, document: Mapping[str, Any] | None) -> DeliveryMetadata:
        doc = document or {}
        status = str(doc.get(Key.STATUS))
        amount = doc.get(Key.AMOUNT_WEI)
        return cls(
            status=DeliveryStatus(status) if status in DeliveryStatus._value2member_map_ else None,
            retry_attempts=int(doc.get(Key.RETRY_ATTEMPTS) or 0),
            tx_hash=doc.get(Key.TX_HASH),
            nonce=doc.get(Key.NONCE),
            batch_id=doc.get(Key.BATCH_ID),
            bundle_id=doc.get(Key.BUNDLE_ID),
            amount_wei=int(amount) if amount is not None else None,
            block_number=doc.get(Key.BLOCK_NUMBER),
            block_hash=doc.get(Key.BLOCK_HASH),
            delivered_at=doc.get(Key.DELIVERED_AT),
            last_error=doc.get(Key.LAST_ERROR),
            last_failed_at=doc.get(Key.LAST_FAILED_AT),
            next_retry_at=doc.get(Key.NEXT_RETRY_AT),
            last_retry_at=doc.get(Key.LAST_RETRY_AT),
            alerted_at=doc.get(Key.ALERTED_AT),
            reorged_at=doc.get(Key.REORGED_AT),
            carried_at=doc.get(Key.CARRIED_AT),
            held_at=doc.get(Key.HELD_AT),
            held_cause=doc.get(Key.HELD_CAUSE),
            held_alerted_at=doc.get(Key.HELD_ALERTED_AT),
            correlation_id=doc.get(Key.CORRELATION_ID),
            stream_name=doc.get(Key.STREAM_NAME),
            timestamp=doc.get(Key.TIMESTAMP),
        )
