"""The reserve's logs, read forward from a cursor: which transaction of the canonical
chain paid which item, whoever sent it.

Every ``Delivered``/``Refused`` log of the active deployment is read once, in bounded
block ranges (DELIVERY_LOG_SCAN_BLOCKS; hosted nodes cap a log query's range), grouped
by transaction and recorded on the batch that sent it; a transaction this platform never
signed is adopted as a ``foreign`` batch (and alerted: someone else holds the key), so
its events are delivered like any other and never paid again, wherever they are.

The cursor is a block and its hash. While the hash of that block is unchanged, nothing
at or below it changed (each block commits to its parent), so every payment recorded
still stands. When it changed (a reorg), the scan restarts just after the final block and
the payments recorded above it are checked against what the canonical chain now holds:
a payment that vanished goes back to delivery (revenue.delivery.transitions.batch_vanished).

An item id the chain paid is never given to a new event or bundle (paid_item_ids_skip): a
database restored from a backup older than the chain would give the ids of the events it
lost again, and the reserve, which pays an id once, would refuse each new event as paid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from hexbytes import HexBytes

from core.db import id_sequence_advance
from revenue.alerts import alert_send
from revenue.chain.client import DeliveryItem, PaymentLog, block_hash_at, payment_logs
from revenue.chain.runtime import ChainContext
from revenue.delivery.cycle import CycleCounters, chain_call
from revenue.delivery.health import ChainView
from revenue.delivery.selectors import (
    BUNDLE_ITEM_BASE,
    delivery_batch_by_tx_hash,
    delivery_batch_final_latest,
    delivery_batches_in_flight,
    delivery_batches_mined_since,
    delivery_batches_not_final,
    items_events,
)
from revenue.delivery.transitions import batch_mined_record, batch_vanished
from revenue.models import ChainDeployment, DeliveryBatch, DeliveryBatchStatus, DeliveryBundle, RevenueEvent

logger = logging.getLogger("revenue.delivery")


@dataclass
class MinedTransaction:
    """What the logs say one transaction did."""

    tx_hash: str
    block_number: int
    block_hash: str
    paid: list[PaymentLog] = field(default_factory=list)
    refused: list[PaymentLog] = field(default_factory=list)


def mined_transactions(logs: list[PaymentLog]) -> list[MinedTransaction]:
    """Pure: the logs grouped by transaction, in chain order."""
    found: dict[str, MinedTransaction] = {}
    for log in logs:
        mined = found.setdefault(log.tx_hash, MinedTransaction(log.tx_hash, log.block_number, log.block_hash))
        (mined.paid if log.paid else mined.refused).append(log)
    return list(found.values())


@dataclass(frozen=True, slots=True)
class PaidIdsSkipped:
    """The highest revenue event id and dust bundle id the chain paid that this database had
    not given yet (0: none): the ids it gives from now on are past them."""

    event_id: int = 0
    bundle_id: int = 0

    def __bool__(self) -> bool:
        return bool(self.event_id or self.bundle_id)

    def describe(self) -> str:
        parts = [f"revenue event ids up to {self.event_id}"] if self.event_id else []
        parts += [f"dust bundle ids up to {self.bundle_id}"] if self.bundle_id else []
        return (
            f"the database is behind the chain (restored from a backup older than the chain?): the reserve paid "
            f"{' and '.join(parts)}, which this database never gave; its new ids start past them, and those "
            f"payments are adopted as foreign batches (alerted)"
        )


def paid_item_ids_skip(*, item_ids: Iterable[int]) -> PaidIdsSkipped:
    """Moves the revenue events' and the dust bundles' id sequences past every id among
    `item_ids` (items the reserve paid or refused as paid): a new event given an id the
    chain already paid is refused by the reserve and was taken for paid by that earlier
    payment, another event's amount. Happens only when the database gives ids the chain has
    seen: restored from a backup older than the chain, or someone with the platform's key
    paid ids ahead of their events. Logged at ERROR."""
    ids = list(item_ids)
    events = [item for item in ids if item < BUNDLE_ITEM_BASE]
    bundles = [item - BUNDLE_ITEM_BASE for item in ids if item >= BUNDLE_ITEM_BASE]
    skipped = PaidIdsSkipped(
        event_id=max(events) if events and id_sequence_advance(model=RevenueEvent, past=max(events)) else 0,
        bundle_id=max(bundles) if bundles and id_sequence_advance(model=DeliveryBundle, past=max(bundles)) else 0,
    )
    if skipped:
        logger.error(
            skipped.describe(),
            extra={"skipped_event_id": skipped.event_id, "skipped_bundle_id": skipped.bundle_id},
        )
    return skipped


def chain_paid_ids_skip(context: ChainContext) -> PaidIdsSkipped:
    """paid_item_ids_skip for the reserve's logs the database has not read yet (from its
    cursor to the head): `manage.py chain_check` runs it before any process starts, so that
    no event is made with a paid id before the delivery's first scan."""
    deployment = ChainDeployment.objects.get(pk=context.deployment_id)
    start = deployment.deployed_block if deployment.scanned_block is None else deployment.scanned_block + 1
    logs = payment_logs(
        context.w3, context.contract_address, start, "latest", max_blocks=settings.DELIVERY_LOG_SCAN_BLOCKS
    )
    return paid_item_ids_skip(item_ids=(log.item_id for log in logs))


def chain_scan(context: ChainContext, view: ChainView, counters: CycleCounters, *, now: datetime) -> None:
    """Bring the recorded payments of the active deployment up to the chain's head."""
    deployment = ChainDeployment.objects.get(pk=context.deployment_id)
    start = deployment.deployed_block
    rewound = broken = False
    if deployment.scanned_block is not None:
        start = deployment.scanned_block + 1
        if block_hash_at(context.w3, deployment.scanned_block) != deployment.scanned_block_hash:
            rewound = True
            counters.reorgs_detected += 1
            # Finality was broken (a reorg below the final block, or a node back from older
            # state, whose own `finalized` block went back with it): trust nothing.
            broken = deployment.scanned_block <= view.final_block or _final_batch_moved(context)
            if broken:
                logger.error("a reorg reached below the final block", extra={"block": deployment.scanned_block})
                start = deployment.deployed_block
            else:
                start = max(deployment.deployed_block, view.final_block + 1)
            logger.warning(
                "reorg detected: rescanning the reserve's logs",
                extra={"from_block": start, "scanned_block": deployment.scanned_block},
            )
    if start > view.head and not rewound:
        return
    logs = payment_logs(
        context.w3, context.contract_address, start, view.head, max_blocks=settings.DELIVERY_LOG_SCAN_BLOCKS
    )
    found = mined_transactions(logs)
    if rewound:
        _vanished_take_back(context, found, counters, since_block=start, finality_broken=broken, now=now)
    if found:
        _record(context, found, counters, rewound=rewound, now=now)
    ChainDeployment.objects.filter(pk=deployment.pk).update(scanned_block=view.head, scanned_block_hash=view.head_hash)


def _final_batch_moved(context: ChainContext) -> bool:
    """Whether the block of the latest batch seen final is not in the canonical chain any
    more (one node call)."""
    final = delivery_batch_final_latest(deployment_id=context.deployment_id)
    return final is not None and block_hash_at(context.w3, int(final.block_number or 0)) != final.block_hash


def _vanished_take_back(
    context: ChainContext,
    found: list[MinedTransaction],
    counters: CycleCounters,
    *,
    since_block: int,
    finality_broken: bool,
    now: datetime,
) -> None:
    """Payments recorded at or above ``since_block`` that the canonical chain no longer
    holds; with ``finality_broken``, final ones too (taken back and alerted)."""
    canonical = {mined.tx_hash: mined.block_hash for mined in found}
    if finality_broken:
        batches = delivery_batches_mined_since(deployment_id=context.deployment_id, block_number=since_block)
    else:
        batches = delivery_batches_not_final(deployment_id=context.deployment_id)
    lost_final: list[DeliveryBatch] = []
    for batch in batches:
        assert batch.block_number is not None  # noqa: S101  (the selector's filter)
        if batch.block_number < since_block:
            continue
        if canonical.get(batch.mined_tx_hash) == batch.block_hash:
            continue
        if batch.finalized_at is not None:
            lost_final.append(batch)
        counters.events_taken_back += batch_vanished(batch=batch, now=now)
        counters.reorged_batches += 1
    if lost_final:
        logger.error(
            "final delivery payments left the canonical chain", extra={"batch_ids": [b.pk for b in lost_final][:50]}
        )
        with transaction.atomic():
            alert_send(
                kind="finality_broken",
                subject=f"On-chain delivery: a final payment left the chain ({len(lost_final)} batch(es))",
                details={
                    "batch_ids": [b.pk for b in lost_final][:50],
                    "blocks": [b.block_number for b in lost_final][:50],
                    "hint": "the node reorganised below its final block or restarted from older state; "
                    "the events go back to delivery and are paid again once",
                },
            )


def _record(
    context: ChainContext, found: list[MinedTransaction], counters: CycleCounters, *, rewound: bool, now: datetime
) -> None:
    """Each transaction on the batch that sent it, in chain order (a payer before the
    transactions that found its items paid). New logs are those of batches in flight;
    after a rewind, confirmed batches' logs are read again."""
    live = delivery_batches_in_flight(deployment_id=context.deployment_id)
    if rewound:
        live += delivery_batches_not_final(deployment_id=context.deployment_id)
    known: dict[str, DeliveryBatch] = {}
    for batch in live:
        known.update(dict.fromkeys(batch.tx_hashes, batch))
    for mined in found:
        found_batch = known.get(mined.tx_hash) or delivery_batch_by_tx_hash(
            deployment_id=context.deployment_id, tx_hash=mined.tx_hash
        )
        if found_batch is None:
            _foreign_adopt(context, mined, counters, now=now)
            continue
        batch = found_batch
        if batch.mined_tx_hash == mined.tx_hash and batch.block_hash == mined.block_hash:
            continue  # recorded already
        if batch.mined_tx_hash and not mined.paid:
            # Another version of this batch is recorded as its payment (still canonical: a
            # vanished one was taken back above). This one was mined too (a fork holding
            # both came back after the batch was rebuilt at a later nonce), found every item
            # paid and was refunded: recording it instead would leave the batch's events
            # `submitted` forever under a batch that paid nothing.
            counters.items_refused += len(mined.refused)
            logger.warning(
                "a second version of a delivery batch was mined and refunded",
                extra={"batch_id": batch.pk, "tx_hash": mined.tx_hash, "paid_by": batch.mined_tx_hash},
            )
            continue
        if batch.status not in (DeliveryBatchStatus.SUBMITTED, DeliveryBatchStatus.CONFIRMED):
            # A version of a batch given up on was mined after all: what it paid is paid.
            DeliveryBatch.objects.filter(pk=batch.pk).update(status=DeliveryBatchStatus.SUBMITTED)
            batch.status = DeliveryBatchStatus.SUBMITTED
            logger.error("a failed delivery batch was mined after all", extra={"batch_id": batch.pk})
        nonce = batch.nonce if mined.tx_hash == batch.tx_hashes[-1] else _nonce_of(context, mined.tx_hash)
        batch_mined_record(
            batch=batch,
            tx_hash=mined.tx_hash,
            nonce=nonce,
            block_number=mined.block_number,
            block_hash=mined.block_hash,
            refused_item_ids=[log.item_id for log in mined.refused],
            paid_items=[
                DeliveryItem(item_id=log.item_id, stream_id=int(log.stream_id or 0), amount_wei=log.amount)
                for log in mined.paid
            ],
        )
        counters.batches_mined += 1
        if mined.refused:
            counters.items_refused += len(mined.refused)
            logger.warning(
                "items of a delivery were already paid by another transaction (refunded)",
                extra={"batch_id": batch.pk, "items": [log.item_id for log in mined.refused][:50]},
            )


def _nonce_of(context: ChainContext, tx_hash: str) -> int:
    return int(chain_call(context.w3.eth.get_transaction, HexBytes(tx_hash))["nonce"])


def _foreign_adopt(context: ChainContext, mined: MinedTransaction, counters: CycleCounters, *, now: datetime) -> None:
    """A transaction this platform did not sign paid items: recorded as a batch of the items
    it paid, so their events are delivered like any other and never selected for a second
    payment. Alerted: someone else signs with the platform's key, or the database is behind
    the chain (restored from an older backup): the ids it paid are never given to new events."""
    paid_item_ids_skip(item_ids=[log.item_id for log in (*mined.paid, *mined.refused)])
    sent = chain_call(context.w3.eth.get_transaction, HexBytes(mined.tx_hash))
    paid = mined.paid
    details = {
        "tx_hash": mined.tx_hash,
        "sender": str(sent.get("from")),
        "block_number": mined.block_number,
        "items_paid": len(paid),
        "items_refused": len(mined.refused),
        "hint": (
            "someone else signs with the platform's delivery key, or the database was restored from a backup"
            ' older than the chain (docs/operations.md, "Backup and restore")'
        ),
    }
    subject = f"A transaction this platform did not send paid {len(paid)} revenue item(s)"
    if not paid:  # it only found paid items: nothing to adopt
        with transaction.atomic():
            alert_send(kind="foreign_payment", subject=subject, details=details)
        return
    events = items_events(item_ids=(log.item_id for log in paid))
    with transaction.atomic(durable=True):
        batch = DeliveryBatch.objects.create(
            deployment_id=context.deployment_id,
            size=len(paid),
            item_ids=[log.item_id for log in paid],
            stream_ids=[log.stream_id for log in paid],
            amounts_wei=[str(log.amount) for log in paid],
            event_ids=[event for log in paid for event in events[log.item_id]],
            value_wei=str(sum(log.amount for log in paid)),
            nonce=int(sent["nonce"]),
            gas=int(sent["gas"]),
            max_fee_per_gas=int(sent.get("maxFeePerGas") or sent.get("gasPrice") or 0),
            max_priority_fee_per_gas=int(sent.get("maxPriorityFeePerGas") or 0),
            signed_raw_tx="",
            tx_hashes=[mined.tx_hash],
            status=DeliveryBatchStatus.SUBMITTED,
            submitted_block=mined.block_number,
            foreign=True,
            submitted_at=now,
            last_error="paid by a transaction this platform did not send",
        )
        alert_send(kind="foreign_payment", subject=subject, details={**details, "batch_id": batch.pk})
    batch_mined_record(
        batch=batch,
        tx_hash=mined.tx_hash,
        nonce=int(sent["nonce"]),
        block_number=mined.block_number,
        block_hash=mined.block_hash,
        refused_item_ids=[],
        amounts={log.item_id: log.amount for log in paid if log.item_id < BUNDLE_ITEM_BASE},
    )
    counters.adopted_batches += 1
    logger.error(
        "foreign delivery adopted from the reserve's logs",
        extra={"batch_id": batch.pk, "tx_hash": mined.tx_hash, "items": len(paid)},
    )
