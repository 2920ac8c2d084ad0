"""Reconciliation: what the chain says about every batch that is not final, before
anything new is sent. The chain is the source of truth; the database follows it.

1. The reserve's logs (revenue.delivery.scan): who paid what in the canonical chain;
   payments that left it go back to delivery, foreign payments are adopted.
2. Mined batches with CHAIN_CONFIRMATIONS confirmations are confirmed: the events their
   transaction paid are delivered. Confirmed batches are re-checked (step 1) until their
   block is final (the node's `finalized` block, or CHAIN_FINALITY_DEPTH deep).
3. Per batch not mined, from the receipts of EVERY version it ever signed:
   - mined OK: the scan records it;
   - reverted: once the revert has its confirmations, the batch failed (with an attempt
     of its events, unless the contract refused the platform itself: paused, signer);
   - no receipt: nonce used by another transaction -> rebuild at the next free nonce;
     the node does not know it (dropped, restarted) -> rebroadcast the same bytes
     (re-signed with higher fees if refused as underpriced); pending too long or priced
     below the next base fee -> replace at the same nonce with higher fees (for being slow,
     only once blocks were made since its latest version was sent).
4. A nonce gap below the lowest batch not mined is filled.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from hexbytes import HexBytes

from revenue.chain.client import classify_error, error_message, explain_failed_receipt, operator_cause, receipt_or_none
from revenue.chain.runtime import ChainContext
from revenue.delivery.broadcast import (
    batch_rebroadcast,
    batch_rebuild,
    batch_replace,
    nonce_gaps_fill,
    tx_known,
)
from revenue.delivery.cycle import CycleCounters, chain_call
from revenue.delivery.health import ChainView
from revenue.delivery.scan import chain_scan
from revenue.delivery.selectors import delivery_batches_in_flight, delivery_batches_mined_unconfirmed
from revenue.delivery.transitions import batch_confirm, batch_fail, batches_finalize
from revenue.models import DeliveryBatch, DeliveryBatchStatus

logger = logging.getLogger("revenue.delivery")

BatchState = Literal["unmined", "mined", "final"]


def deliveries_reconcile(context: ChainContext, view: ChainView, counters: CycleCounters, *, now: datetime) -> bool:
    """Bring every non-final batch of the active deployment up to date with the chain.
    Returns True while a batch of ours is not mined (then nothing new may be sent)."""
    chain_scan(context, view, counters, now=now)
    _confirm_and_finalize(context, view, counters, now=now)
    waiting: list[DeliveryBatch] = []
    for batch in delivery_batches_in_flight(deployment_id=context.deployment_id):
        if batch.block_number is not None or batch.foreign:
            continue  # mined: confirmed in step 2 once deep enough
        if _batch_reconcile(context, view, batch, counters, now=now) == "unmined":
            waiting.append(batch)
    live = set(
        DeliveryBatch.objects.filter(pk__in=[b.pk for b in waiting], status=DeliveryBatchStatus.SUBMITTED).values_list(
            "pk", flat=True
        )
    )
    still = [batch for batch in waiting if batch.pk in live]
    nonce_gaps_fill(context, view, counters, lowest_nonce=min((b.nonce for b in still), default=None))
    return bool(still)


def _confirm_and_finalize(context: ChainContext, view: ChainView, counters: CycleCounters, *, now: datetime) -> None:
    for batch in delivery_batches_mined_unconfirmed(deployment_id=context.deployment_id):
        assert batch.block_number is not None  # noqa: S101  (the selector's filter)
        if view.confirmations(batch.block_number) >= settings.CHAIN_CONFIRMATIONS:
            counters.events_confirmed += batch_confirm(batch=batch, nonce=_mined_nonce(context, batch), now=now)
    counters.batches_finalized += batches_finalize(
        deployment_id=context.deployment_id, final_block=view.final_block, now=now
    )


def _mined_nonce(context: ChainContext, batch: DeliveryBatch) -> int:
    if batch.foreign or batch.mined_tx_hash == batch.tx_hashes[-1]:
        return batch.nonce
    return int(chain_call(context.w3.eth.get_transaction, HexBytes(batch.mined_tx_hash))["nonce"])


def _batch_reconcile(
    context: ChainContext, view: ChainView, batch: DeliveryBatch, counters: CycleCounters, *, now: datetime
) -> BatchState:
    for tx_hash in reversed(batch.tx_hashes):  # newest first: usually the one mined
        receipt = receipt_or_none(context.w3, tx_hash)
        if receipt is not None:
            if receipt["status"] == 1:
                return "mined"  # the next scan records what it paid
            return _batch_reverted(context, view, batch, counters, receipt=receipt, now=now)
    if view.latest_nonce > batch.nonce:  # its nonce went to a transaction it does not know
        batch_rebuild(context, view, batch, counters, now=now)
        return "unmined"
    if not tx_known(context.w3, batch.tx_hashes[-1]):
        batch_rebroadcast(context, view, batch, counters, now=now)
        return "unmined"
    reason = _replacement_reason(view, batch, now=now)
    if reason:
        batch_replace(context, view, batch, counters, now=now, reason=reason)
    return "unmined"


def _replacement_reason(view: ChainView, batch: DeliveryBatch, *, now: datetime) -> str:
    if view.next_base_fee > batch.max_fee_per_gas:
        return f"underpriced: max fee {batch.max_fee_per_gas} below the next base fee {view.next_base_fee}"
    since = batch.last_broadcast_at or batch.submitted_at
    if view.head <= batch.broadcast_block:
        # No block was made since its latest version was sent (the node's head stalls):
        # nothing passed it over, and higher fees cannot help. Before, it was re-signed every
        # DELIVERY_STUCK_SECONDS, +12.5% each time, and paid hundreds of times the base fee
        # once blocks came again. A stall lasting is alerted (delivery_batch_stuck).
        return ""
    if now - since >= timedelta(seconds=settings.DELIVERY_STUCK_SECONDS):
        return f"pending for {int((now - since).total_seconds())} s"
    return ""


def _batch_reverted(
    context: ChainContext,
    view: ChainView,
    batch: DeliveryBatch,
    counters: CycleCounters,
    *,
    receipt: Any,
    now: datetime,
) -> BatchState:
    if view.confirmations(int(receipt["blockNumber"])) < settings.CHAIN_CONFIRMATIONS:
        return "mined"  # a reorg may still take the revert away
    failure = explain_failed_receipt(context.w3, receipt)
    reason = error_message(failure) if failure is not None else "reverted"
    cause = operator_cause(failure) if failure is not None else None
    if cause is not None:
        # The contract refused the platform, not the events: they go back, no attempt used.
        batch_fail(batch=batch, error=f"reverted on-chain ({cause}): {reason}", now=now, operator=True)
        counters.notes.append(f"batch {batch.pk}: reverted ({cause}); its events wait for delivery to resume")
        return "final"
    kind = classify_error(failure) if failure is not None else "fatal"
    counters.events_failed += len(batch.event_ids)
    batch_fail(batch=batch, error=f"reverted on-chain ({kind}): {reason}", now=now)
    return "final"
