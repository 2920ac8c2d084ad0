"""Building, persisting and broadcasting delivery transactions.

Order of work for every transaction (new batch, replacement, rebuild): sign (the hash is
known before anything is sent), commit the batch row with the signed bytes and the hash,
and only then broadcast. A crash between the commit and the broadcast leaves a batch the
node does not know, which the next reconciliation rebroadcasts; a crash after the
broadcast leaves nothing unrecorded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound

from revenue.chain.client import (
    MAX_BATCH,
    WEI_PER_ETH,
    ChainUnavailable,
    DeliveryItem,
    SignedTx,
    build_delivery_tx,
    bump_fees,
    chain_next_sequence,
    classify_error,
    error_message,
    is_connection_failure,
    receipt_or_none,
    send_signed,
    sign_tx,
    suggest_fees,
    usd_to_wei,
)
from revenue.chain.runtime import ChainContext
from revenue.delivery.selectors import (
    DeliverableEvent,
    delivery_batches_in_flight,
    delivery_price_get,
    in_flight_event_ids,
    revenue_events_deliverable,
)
from revenue.delivery.transitions import (
    FAILED,
    PENDING,
    SUBMITTED,
    batch_error_note,
    batch_fail,
    events_fail,
    events_submit,
    events_tx_hash_set,
)
from revenue.models import DeliveryBatch, DeliveryBatchStatus

logger = logging.getLogger("revenue.delivery")

USD_CURRENCIES = frozenset({"USD", "USDT", "USDC"})


class DeliveryNotConfigured(Exception):
    """Something only an operator can fix (e.g. no price market): nothing is attempted."""


class DeliveryRace(Exception):
    """The events changed between selection and persisting: the batch is rolled back."""


@dataclass
class CycleCounters:
    batches_sent: int = 0
    events_sent: int = 0
    events_confirmed: int = 0
    events_failed: int = 0
    rebroadcasts: int = 0
    replacements: int = 0
    rebuilds: int = 0
    reorged_batches: int = 0
    adopted_batches: int = 0
    notes: list[str] = field(default_factory=list)


def chain_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """A raw web3 call whose transport failure is reported as ChainUnavailable (transient)."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        if is_connection_failure(exc):
            raise ChainUnavailable(f"chain node unavailable: {type(exc).__name__}: {exc}") from exc
        raise


def holder_share_wei(event: DeliverableEvent, *, eth_usd_price: Decimal) -> int | None:
    """The holder share in wei, rounded DOWN to a whole wei (the platform keeps the dust):
    USD-pegged currencies at the ETH-USDT reference price, ETH exactly; None otherwise."""
    currency = event.currency.upper()
    if currency in USD_CURRENCIES:
        return usd_to_wei(event.holder_share, eth_usd_price=eth_usd_price)
    if currency == "ETH":
        return math.floor(event.holder_share * WEI_PER_ETH)
    return None


def tx_known(context: ChainContext, tx_hash: str) -> bool:
    """Whether the node has the transaction (pending in its pool, or mined)."""
    try:
        chain_call(context.w3.eth.get_transaction, HexBytes(tx_hash))
        return True
    except TransactionNotFound:
        return False


# --------------------------------------------------------------------------- new batches


def batch_send_next(
    context: ChainContext, counters: CycleCounters, *, now: datetime, limit: int, stale_only: bool
) -> bool:
    """Select, sign, persist and broadcast the next batch. Returns whether a batch was
    persisted (the caller reconciles again before the next one)."""
    in_flight = delivery_batches_in_flight(deployment_id=context.deployment_id)
    events = revenue_events_deliverable(
        now=now,
        limit=min(limit, MAX_BATCH),
        exclude_ids=in_flight_event_ids(in_flight),
        stale_only=stale_only,
    )
    if not events:
        return False
    price = delivery_price_get()
    if price is None or price <= 0:
        raise DeliveryNotConfigured(f"no {settings.DELIVERY_PRICE_MARKET} market price to convert holder shares")
    items: list[DeliveryItem] = []
    unpriced: list[int] = []
    for event in events:
        wei = holder_share_wei(event, eth_usd_price=price)
        if wei is None:
            unpriced.append(event.id)
        else:
            items.append(DeliveryItem(event_id=event.id, stream_id=event.stream_id, amount_wei=wei))
    if unpriced:
        with transaction.atomic(durable=True):
            events_fail(
                event_ids=unpriced,
                error="no conversion to wei for this currency",
                now=now,
                from_statuses=[PENDING, FAILED],
                give_up=True,
            )
        counters.events_failed += len(unpriced)
    if not items:
        return bool(unpriced)

    w3 = context.w3
    try:
        first_sequence = chain_next_sequence(w3, context.contract_address)
        nonce = int(chain_call(w3.eth.get_transaction_count, context.signer.address, "pending"))
        head = int(chain_call(lambda: w3.eth.block_number))
        max_fee, priority = suggest_fees(w3)
        tx = build_delivery_tx(
            w3,
            contract_address=context.contract_address,
            signer_address=context.signer_address,
            first_sequence=first_sequence,
            items=items,
            nonce=nonce,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority,
        )
    except Exception as exc:
        kind = classify_error(exc)
        if kind == "already_delivered":
            # Another transaction holds this sequence and is not mined yet: the next
            # reconciliation finds it in the contract's logs. Nothing was attempted.
            counters.notes.append(f"build refused as already delivered: {error_message(exc)[:200]}")
            return False
        with transaction.atomic(durable=True):
            events_fail(
                event_ids=[item.event_id for item in items],
                error=f"{kind}: {error_message(exc)}",
                now=now,
                from_statuses=[PENDING, FAILED],
            )
        counters.events_failed += len(items)
        raise
    signed = sign_tx(context.signer, tx)
    with transaction.atomic(durable=True):
        batch = DeliveryBatch.objects.create(
            deployment_id=context.deployment_id,
            first_sequence=first_sequence,
            size=len(items),
            event_ids=[item.event_id for item in items],
            stream_ids=[item.stream_id for item in items],
            amounts_wei=[str(item.amount_wei) for item in items],
            value_wei=str(sum(item.amount_wei for item in items)),
            eth_usd_price=price,
            nonce=nonce,
            gas=int(tx["gas"]),
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority,
            signed_raw_tx=HexBytes(signed.raw_transaction).to_0x_hex(),
            tx_hashes=[signed.tx_hash],
            status=DeliveryBatchStatus.SUBMITTED,
            submitted_block=head,
            submitted_at=now,
            last_broadcast_at=now,
        )
        if events_submit(batch=batch, now=now) != len(items):
            raise DeliveryRace(f"events of batch at sequence {first_sequence} changed while it was built")
    logger.info(
        "delivery batch submitted",
        extra={
            "batch_id": batch.pk,
            "first_sequence": first_sequence,
            "events": len(items),
            "nonce": nonce,
            "tx_hash": signed.tx_hash,
        },
    )
    counters.batches_sent += 1
    counters.events_sent += len(items)
    batch_broadcast(context, batch, counters, now=now, initial=True)
    return True


# --------------------------------------------------------------------------- broadcasting


def _signed_of(batch: DeliveryBatch) -> SignedTx:
    return SignedTx(bytes(HexBytes(batch.signed_raw_tx)), batch.tx_hashes[-1])


def batch_broadcast(
    context: ChainContext, batch: DeliveryBatch, counters: CycleCounters, *, now: datetime, initial: bool
) -> bool:
    """Send the batch's latest signed bytes. A transient failure (node down, timeout) is
    ambiguous, since the node may have received them: the batch stays for reconciliation.
    On the first broadcast the events' attempt still counts as failed, with a backoff.
    Raises the transient error so the cycle stops; returns False if the node refused."""
    try:
        send_signed(context.w3, _signed_of(batch))
        return True
    except Exception as exc:
        kind = classify_error(exc)
        message = f"{kind}: {error_message(exc)}"
        batch_error_note(batch=batch, error=message)
        if kind == "transient":
            if initial:
                with transaction.atomic(durable=True):
                    events_fail(event_ids=batch.event_ids, error=message, now=now, from_statuses=[SUBMITTED])
                counters.events_failed += batch.size
            raise
        if kind == "already_delivered":
            return False  # reconciliation reads the outcome from the chain
        # Refused (e.g. insufficient funds). Only if no transaction of this batch exists
        # anywhere on the node is it safe to give the events a new batch.
        if _batch_unknown_to_node(context, batch):
            batch_fail(batch=batch, error=f"refused by the node: {message}", now=now)
            counters.events_failed += batch.size
        else:
            counters.notes.append(f"batch {batch.pk}: broadcast refused, an earlier transaction is pending")
        logger.warning("delivery broadcast refused", extra={"batch_id": batch.pk, "error": message[:300]})
        return False


def _batch_unknown_to_node(context: ChainContext, batch: DeliveryBatch) -> bool:
    return all(
        receipt_or_none(context.w3, tx_hash) is None and not tx_known(context, tx_hash) for tx_hash in batch.tx_hashes
    )


def batch_rebroadcast(context: ChainContext, batch: DeliveryBatch, counters: CycleCounters, *, now: datetime) -> None:
    """The node lost the transaction (dropped, restarted, reorged out): the same signed
    bytes again, same nonce, same hash."""
    DeliveryBatch.objects.filter(pk=batch.pk).update(last_broadcast_at=now)
    if batch_broadcast(context, batch, counters, now=now, initial=False):
        counters.rebroadcasts += 1
        logger.info("delivery transaction rebroadcast", extra={"batch_id": batch.pk, "tx_hash": batch.tx_hashes[-1]})


def _items(batch: DeliveryBatch) -> list[DeliveryItem]:
    return [
        DeliveryItem(event_id=int(event_id), stream_id=int(stream_id), amount_wei=int(amount))
        for event_id, stream_id, amount in zip(batch.event_ids, batch.stream_ids, batch.amounts_wei, strict=True)
    ]


def _resign(
    context: ChainContext,
    batch: DeliveryBatch,
    counters: CycleCounters,
    *,
    nonce: int,
    max_fee: int,
    priority: int,
    now: datetime,
    reason: str,
) -> None:
    """Same sequence and items in a newly signed transaction; every hash is kept, so
    whichever of them is mined is found."""
    tx = build_delivery_tx(
        context.w3,
        contract_address=context.contract_address,
        signer_address=context.signer_address,
        first_sequence=batch.first_sequence,
        items=_items(batch),
        nonce=nonce,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        gas=batch.gas,  # explicit: no estimate, which would simulate against the current state
    )
    signed = sign_tx(context.signer, tx)
    batch.tx_hashes = [*batch.tx_hashes, signed.tx_hash]
    batch.signed_raw_tx = HexBytes(signed.raw_transaction).to_0x_hex()
    batch.nonce = nonce
    batch.max_fee_per_gas = max_fee
    batch.max_priority_fee_per_gas = priority
    batch.last_broadcast_at = now
    with transaction.atomic(durable=True):
        DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatchStatus.SUBMITTED).update(
            tx_hashes=batch.tx_hashes,
            signed_raw_tx=batch.signed_raw_tx,
            nonce=nonce,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority,
            last_broadcast_at=now,
        )
        events_tx_hash_set(batch=batch)
    logger.info(
        "delivery transaction re-signed",
        extra={"batch_id": batch.pk, "reason": reason, "nonce": nonce, "tx_hash": signed.tx_hash},
    )
    batch_broadcast(context, batch, counters, now=now, initial=False)


def batch_replace(
    context: ChainContext, batch: DeliveryBatch, counters: CycleCounters, *, now: datetime, reason: str
) -> None:
    """Stuck or underpriced: the same nonce with fees raised by at least 12.5% (and at
    least what the node suggests now), up to DELIVERY_MAX_FEE_PER_GAS_WEI."""
    max_fee, priority = bump_fees(batch.max_fee_per_gas, batch.max_priority_fee_per_gas)
    suggested_max, suggested_priority = suggest_fees(context.w3)
    priority = max(priority, suggested_priority)
    max_fee = max(max_fee, suggested_max, priority)
    if max_fee > settings.DELIVERY_MAX_FEE_PER_GAS_WEI:
        message = f"replacement needs max fee {max_fee} wei/gas, above DELIVERY_MAX_FEE_PER_GAS_WEI"
        batch_error_note(batch=batch, error=message)
        counters.notes.append(f"batch {batch.pk}: {message}")
        logger.error("delivery transaction stuck at the fee cap", extra={"batch_id": batch.pk})
        return
    _resign(context, batch, counters, nonce=batch.nonce, max_fee=max_fee, priority=priority, now=now, reason=reason)
    counters.replacements += 1


def batch_rebuild(context: ChainContext, batch: DeliveryBatch, counters: CycleCounters, *, now: datetime) -> None:
    """The batch's nonce was used by another transaction (or it has no signed bytes of its
    own): the same sequence and items at the next free nonce. The contract's sequence
    check refuses it if the range is taken meanwhile."""
    nonce = int(chain_call(context.w3.eth.get_transaction_count, context.signer.address, "pending"))
    max_fee, priority = suggest_fees(context.w3)
    _resign(context, batch, counters, nonce=nonce, max_fee=max_fee, priority=priority, now=now, reason="rebuild")
    counters.rebuilds += 1
