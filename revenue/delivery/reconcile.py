"""Reconciliation: what the chain says about every batch that is not final, before
anything new is sent. The chain is the source of truth; the database follows it.

Per batch in flight, from the receipts of EVERY transaction it ever broadcast:
- mined OK: remember the block; with CHAIN_CONFIRMATIONS confirmations, confirm it
  (events delivered, `distributed` increased);
- reverted: if the contract's next_sequence is already past the batch, its sequences were
  delivered by another transaction: reconcile from the `Delivered` logs (delivered, never
  failed); otherwise, once the revert has its confirmations, the batch failed;
- no receipt: nonce used by another transaction -> rebuild at a new nonce; node does not
  know it (dropped, restarted) -> rebroadcast the same bytes; pending too long or priced
  below the next base fee -> replace at the same nonce with higher fees.
Across batches: a contract whose next_sequence fell below confirmed batches (a reorg
deeper than the confirmations) puts them back in flight; sequences this platform never
assigned (another sender) are adopted from the logs so their events are not paid again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from hexbytes import HexBytes

from revenue.chain.client import (
    DeliveredLog,
    chain_next_sequence,
    classify_error,
    confirmations,
    delivered_logs,
    error_message,
    explain_failed_receipt,
    receipt_or_none,
)
from revenue.chain.runtime import ChainContext
from revenue.delivery.broadcast import (
    CycleCounters,
    batch_rebroadcast,
    batch_rebuild,
    batch_replace,
    chain_call,
    tx_known,
)
from revenue.delivery.selectors import (
    delivery_batches_confirmed_beyond,
    delivery_batches_in_flight,
    delivery_known_end,
)
from revenue.delivery.transitions import (
    FAILED,
    PENDING,
    SUBMITTED,
    batch_confirm,
    batch_fail,
    batch_mined_record,
    batch_unconfirm,
    events_submit,
)
from revenue.models import ChainDeployment, DeliveryBatch, DeliveryBatchStatus

logger = logging.getLogger("revenue.delivery")

# How far before a batch's submission its sequences could have been mined by another
# transaction (reorgs included) when searching the logs.
LOG_SEARCH_MARGIN_BLOCKS = 256

BatchState = Literal["unmined", "mined", "final"]


def deliveries_reconcile(context: ChainContext, counters: CycleCounters, *, now: datetime) -> bool:
    """Bring every non-final batch of the active deployment up to date with the chain.
    Returns True while a batch is not mined (then nothing new may be sent)."""
    w3 = context.w3
    # Nonce first, receipts after: a transaction mined in between is then seen as mined,
    # never as "nonce used by something else".
    latest_nonce = int(chain_call(w3.eth.get_transaction_count, context.signer.address, "latest"))
    next_sequence = chain_next_sequence(w3, context.contract_address)
    head = int(chain_call(lambda: w3.eth.block_number))

    for batch in delivery_batches_confirmed_beyond(deployment_id=context.deployment_id, sequence=next_sequence):
        batch_unconfirm(batch=batch, now=now)
        counters.reorged_batches += 1

    known_end = delivery_known_end(deployment_id=context.deployment_id)
    if next_sequence > known_end:
        _foreign_adopt(context, counters, start=known_end, end=next_sequence, now=now)

    unmined = False
    for batch in delivery_batches_in_flight(deployment_id=context.deployment_id):
        state = _batch_reconcile(
            context, batch, counters, next_sequence=next_sequence, latest_nonce=latest_nonce, head=head, now=now
        )
        unmined = unmined or state == "unmined"
    return unmined


def _batch_reconcile(
    context: ChainContext,
    batch: DeliveryBatch,
    counters: CycleCounters,
    *,
    next_sequence: int,
    latest_nonce: int,
    head: int,
    now: datetime,
) -> BatchState:
    w3 = context.w3
    for tx_hash in reversed(batch.tx_hashes):  # newest first: usually the one mined
        receipt = receipt_or_none(w3, tx_hash)
        if receipt is not None:
            return _batch_receipt_reconcile(
                context, batch, counters, receipt=receipt, tx_hash=tx_hash, next_sequence=next_sequence, now=now
            )

    if batch.block_number is not None:  # a shallow reorg took its block away
        batch_mined_record(batch=batch, tx_hash="", block_number=None)
    if next_sequence >= batch.end_sequence:
        return _batch_logs_reconcile(context, batch, counters, head=head, now=now)
    if not batch.signed_raw_tx or latest_nonce > batch.nonce:
        batch_rebuild(context, batch, counters, now=now)
        return "unmined"
    if not tx_known(context, batch.tx_hashes[-1]):
        batch_rebroadcast(context, batch, counters, now=now)
        return "unmined"
    reason = _replacement_reason(context, batch, now=now)
    if reason:
        batch_replace(context, batch, counters, now=now, reason=reason)
    return "unmined"


def _replacement_reason(context: ChainContext, batch: DeliveryBatch, *, now: datetime) -> str:
    base_fee = _pending_base_fee(context)
    if base_fee > batch.max_fee_per_gas:
        return f"underpriced: max fee {batch.max_fee_per_gas} below the next base fee {base_fee}"
    since = batch.last_broadcast_at or batch.submitted_at
    if now - since >= timedelta(seconds=settings.DELIVERY_STUCK_SECONDS):
        return f"pending for {int((now - since).total_seconds())} s"
    return ""


def _pending_base_fee(context: ChainContext) -> int:
    w3 = context.w3
    try:
        return int(chain_call(w3.eth.get_block, "pending").get("baseFeePerGas") or 0)
    except Exception as exc:
        if classify_error(exc) == "transient":
            raise
        return int(chain_call(w3.eth.get_block, "latest").get("baseFeePerGas") or 0)


def _batch_receipt_reconcile(
    context: ChainContext,
    batch: DeliveryBatch,
    counters: CycleCounters,
    *,
    receipt: Any,
    tx_hash: str,
    next_sequence: int,
    now: datetime,
) -> BatchState:
    w3 = context.w3
    depth = confirmations(w3, receipt)
    if depth == 0:
        return "unmined"  # its block left the chain between two calls; next cycle
    block_number = int(receipt["blockNumber"])
    if receipt["status"] == 1:
        if depth >= settings.CHAIN_CONFIRMATIONS:
            counters.events_confirmed += batch_confirm(
                batch=batch, tx_hash=tx_hash, nonce=batch.nonce, block_number=block_number, now=now
            )
            return "final"
        batch_mined_record(batch=batch, tx_hash=tx_hash, block_number=block_number)
        return "mined"
    # Reverted.
    if next_sequence >= batch.end_sequence:
        # Another transaction delivered these sequences first ("already delivered").
        return _batch_logs_reconcile(context, batch, counters, head=int(w3.eth.block_number), now=now)
    if depth < settings.CHAIN_CONFIRMATIONS:
        batch_mined_record(batch=batch, tx_hash=tx_hash, block_number=block_number)
        return "mined"
    failure = explain_failed_receipt(w3, receipt)
    reason = error_message(failure) if failure is not None else "reverted"
    kind = classify_error(failure) if failure is not None else "fatal"
    counters.events_failed += batch.size
    batch_fail(batch=batch, error=f"reverted on-chain ({kind}): {reason}", now=now)
    return "final"


def _batch_logs_reconcile(
    context: ChainContext, batch: DeliveryBatch, counters: CycleCounters, *, head: int, now: datetime
) -> BatchState:
    """The contract counts this batch's sequences: who delivered them, and what?"""
    deployment = ChainDeployment.objects.get(pk=context.deployment_id)
    start = max(deployment.deployed_block, batch.submitted_block - LOG_SEARCH_MARGIN_BLOCKS)
    logs = {
        log.sequence: log
        for log in delivered_logs(context.w3, context.contract_address, start, "latest")
        if batch.first_sequence <= log.sequence < batch.end_sequence
    }
    if len(logs) < batch.size:
        counters.notes.append(f"batch {batch.pk}: delivered sequences not found in the logs yet")
        return "mined"
    carried = [logs[sequence].event_id for sequence in range(batch.first_sequence, batch.end_sequence)]
    if carried != [int(event_id) for event_id in batch.event_ids]:
        counters.events_failed += batch.size
        batch_fail(
            batch=batch,
            error=f"sequences {batch.first_sequence}..{batch.end_sequence - 1} were delivered with other events",
            now=now,
        )
        return "final"
    first = logs[batch.first_sequence]
    block_number = max(log.block_number for log in logs.values())
    if head - block_number + 1 >= settings.CHAIN_CONFIRMATIONS:
        transaction_ = chain_call(context.w3.eth.get_transaction, HexBytes(first.tx_hash))
        counters.events_confirmed += batch_confirm(
            batch=batch, tx_hash=first.tx_hash, nonce=int(transaction_["nonce"]), block_number=block_number, now=now
        )
        logger.info(
            "delivery batch reconciled from the logs",
            extra={"batch_id": batch.pk, "tx_hash": first.tx_hash, "stored_hashes": batch.tx_hashes},
        )
        return "final"
    batch_mined_record(batch=batch, tx_hash=first.tx_hash, block_number=block_number)
    return "mined"


def _foreign_adopt(context: ChainContext, counters: CycleCounters, *, start: int, end: int, now: datetime) -> None:
    """Sequences [start, end) were delivered by transactions this platform did not record
    (another sender with the signer's key). Record them as batches so their events are
    confirmed like any other and never selected for a second payment."""
    deployment = ChainDeployment.objects.get(pk=context.deployment_id)
    by_tx: dict[str, list[DeliveredLog]] = defaultdict(list)
    for log in delivered_logs(context.w3, context.contract_address, deployment.deployed_block, "latest"):
        if start <= log.sequence < end:
            by_tx[log.tx_hash].append(log)
    for tx_hash, logs in by_tx.items():
        logs.sort(key=lambda log: log.sequence)
        sent = chain_call(context.w3.eth.get_transaction, HexBytes(tx_hash))
        with transaction.atomic(durable=True):
            batch = DeliveryBatch.objects.create(
                deployment_id=context.deployment_id,
                first_sequence=logs[0].sequence,
                size=len(logs),
                event_ids=[log.event_id for log in logs],
                stream_ids=[log.stream_id for log in logs],
                amounts_wei=[str(log.amount) for log in logs],
                value_wei=str(sum(log.amount for log in logs)),
                nonce=int(sent["nonce"]),
                gas=int(sent["gas"]),
                max_fee_per_gas=int(sent.get("maxFeePerGas") or sent.get("gasPrice") or 0),
                max_priority_fee_per_gas=int(sent.get("maxPriorityFeePerGas") or 0),
                signed_raw_tx="",
                tx_hashes=[tx_hash],
                mined_tx_hash=tx_hash,
                status=DeliveryBatchStatus.SUBMITTED,
                block_number=logs[-1].block_number,
                submitted_block=logs[0].block_number,
                foreign=True,
                submitted_at=now,
                last_error="delivered by a transaction this platform did not send",
            )
            events_submit(batch=batch, now=now, from_statuses=[PENDING, FAILED, SUBMITTED])
        counters.adopted_batches += 1
        logger.error(
            "foreign delivery adopted from the reserve's logs",
            extra={"batch_id": batch.pk, "tx_hash": tx_hash, "first_sequence": batch.first_sequence},
        )
