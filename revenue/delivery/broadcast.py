"""The transaction manager: building, persisting, broadcasting and re-signing delivery
transactions (after op-service txmgr and Chainlink's TXM).

Order of work for every transaction (new batch, replacement, rebuild): sign (the hash is
known before anything is sent), commit the batch row with the signed bytes and the hash,
and only then broadcast. A crash between the commit and the broadcast leaves a batch the
node does not know, which the next reconciliation rebroadcasts; a crash after the
broadcast leaves nothing unrecorded.

- A broadcast refused as underpriced (below the base fee, or not enough above what it
  replaces) is re-signed at the same nonce with both fees bumped (>= 12.5%, >= what the
  node suggests), up to DELIVERY_MAX_FEE_PER_GAS_WEI; a transaction that would need more
  is reported as the fault ``fees_above_cap`` instead of being retried forever.
- A nonce taken by another transaction: the batch is rebuilt at the next free nonce,
  without the items the chain shows paid meanwhile (the reserve would refuse them anyway).
- A nonce gap below the batch (a transaction of the signer that will never come) is
  filled with 0-value transfers to the signer itself.
- A signed batch refused for funds (the balance moved since it was planned), or a fee
  bump the balance cannot pay, is re-signed at its nonce with the items the balance pays;
  the items left out stay with that nonce (``left_out_item_ids``) until the version mined
  is known. Only a batch of one item the balance cannot pay pauses delivery.
- Operator-level refusals (insufficient funds) pause delivery; no event's attempt is used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound

from revenue.chain.client import (
    MAX_BATCH,
    WEI_PER_ETH,
    ChainUnavailable,
    DeliveryItem,
    OperatorFault,
    PauseCause,
    SignedTx,
    build_delivery_tx,
    build_self_transfer_tx,
    bump_fees,
    classify_error,
    error_message,
    is_nonce_too_low,
    is_underpriced,
    operator_cause,
    receipt_or_none,
    send_signed,
    sign_tx,
    usd_to_wei,
)
from revenue.chain.runtime import ChainContext
from revenue.delivery.cycle import CycleCounters, chain_call
from revenue.delivery.dust import dust_carry, is_dust
from revenue.delivery.health import ChainView, fees_capped, gas_reserve
from revenue.delivery.metadata import HELD_FOR_FUNDS, RETRYABLE_STATUSES, DeliveryStatus, Key, lookup, status_in
from revenue.delivery.selectors import (
    DeliverableEvent,
    bundle_item_id,
    delivery_batches_in_flight,
    in_flight_event_ids,
    items_events,
    revenue_events_deliverable,
    revenue_events_held,
)
from revenue.delivery.transitions import (
    batch_error_note,
    batch_fail,
    batch_supersede,
    events_fail,
    events_hold,
    events_release,
    events_submit,
    events_tx_hash_set,
)
from revenue.models import DeliveryBatch, DeliveryBatchStatus, DeliveryBundle, RevenueEvent
from revenue.selectors import USD_CURRENCIES

T = TypeVar("T")
logger = logging.getLogger("revenue.delivery")

PLAN_PASSES = 4  # selections per batch: each pass that finds dust carries it forward and looks again
# A batch refused for funds all the same is planned again (without its largest item, or to
# what its own gas leaves) at most this many times, each asking the node again; then the gas
# itself is missing: a pause.
REPLANS_FOR_FUNDS = 8


class DeliveryRace(Exception):
    """The events changed between selection and persisting: the batch is rolled back."""


def holder_share_wei(event: DeliverableEvent, *, eth_usd_price: Decimal) -> int | None:
    """The holder share in wei, rounded DOWN to a whole wei (the platform keeps the dust):
    USD-pegged currencies at the ETH-USDT reference price, ETH exactly; None otherwise."""
    currency = event.currency.upper()
    if currency in USD_CURRENCIES:
        return usd_to_wei(event.holder_share, eth_usd_price=eth_usd_price)
    if currency == "ETH":
        return math.floor(event.holder_share * WEI_PER_ETH)
    return None


def tx_known(w3: Web3, tx_hash: str) -> bool:
    """Whether the node has the transaction (in its pool, queued or pending, or mined)."""
    try:
        chain_call(w3.eth.get_transaction, HexBytes(tx_hash))
        return True
    except TransactionNotFound:
        return False


def replacement_fees(
    *, old_max: int, old_priority: int, suggested_max: int, suggested_priority: int, cap: int
) -> tuple[int, int] | None:
    """Pure: fees of a same-nonce replacement: both raised by at least 12.5% (what nodes
    require to replace), at least what the node suggests, the max fee at most ``cap``.
    None when even the smallest valid replacement is above the cap."""
    bumped_max, bumped_priority = bump_fees(old_max, old_priority)
    if bumped_max > cap or bumped_priority > cap:
        return None
    priority = max(bumped_priority, suggested_priority)
    max_fee = min(max(bumped_max, suggested_max, priority), cap)
    return max_fee, min(priority, max_fee)


# --------------------------------------------------------------------------- new batches


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """One on-chain item of a batch and the events it carries (``own``: an event paid as
    its own item, whose amount is recorded when it is submitted)."""

    item: DeliveryItem
    event_ids: tuple[int, ...]
    own: bool


@dataclass
class BatchPlan:
    entries: list[PlanEntry] = field(default_factory=list)  # in the order of selection: oldest first
    dust: dict[int, int] = field(default_factory=dict)
    unpriced: list[int] = field(default_factory=list)
    held: dict[int, str] = field(default_factory=dict)  # events whose item the signer cannot pay: why

    @property
    def items(self) -> list[DeliveryItem]:
        # consecutive ids share the reserve's bitmap words
        return sorted((entry.item for entry in self.entries), key=lambda item: item.item_id)

    @property
    def event_ids(self) -> list[int]:
        return [pk for entry in self.entries for pk in entry.event_ids]

    @property
    def amounts(self) -> dict[int, int]:
        """The amounts of the events paid as their own item."""
        return {entry.event_ids[0]: entry.item.amount_wei for entry in self.entries if entry.own}

    @property
    def value(self) -> int:
        return sum(entry.item.amount_wei for entry in self.entries)

    def without_largest(self) -> BatchPlan:
        """The same batch without its largest item (the newest of equals): for a batch the
        node refused for funds anyway (its gas above the estimate the budget kept)."""
        return BatchPlan(entries=_largest_removed(self.entries, amount=_entry_amount))


def _entry_amount(entry: PlanEntry) -> int:
    return entry.item.amount_wei


def _item_amount(item: DeliveryItem) -> int:
    return item.amount_wei


def _first_fit(things: list[T], *, budget: int, amount: Callable[[T], int]) -> tuple[list[T], list[T]]:
    """Pure: first fit in the order given (oldest first: the oldest that fits alone always
    goes in) within ``budget``, and what cannot be paid even alone (more than the budget)."""
    kept: list[T] = []
    unpayable: list[T] = []
    left = budget
    for thing in things:
        wei = amount(thing)
        if wei > budget:
            unpayable.append(thing)
        elif wei <= left:
            kept.append(thing)
            left -= wei
    return kept, unpayable


def _largest_removed(things: list[T], *, amount: Callable[[T], int]) -> list[T]:
    """Pure: the same without the largest one (the newest of equals)."""
    largest = max(range(len(things)), key=lambda i: (amount(things[i]), i))
    return [thing for i, thing in enumerate(things) if i != largest]


def budget_fit(entries: list[PlanEntry], *, budget: int) -> tuple[list[PlanEntry], list[PlanEntry]]:
    """Pure: the entries one batch can pay with ``budget`` wei (the signer's balance less the
    gas a batch is given), first fit, and those that cannot be paid even alone (held). The
    rest fit alone but not beside the others: they wait for the next batch."""
    return _first_fit(entries, budget=budget, amount=_entry_amount)


def items_fit(items: list[DeliveryItem], *, budget: int) -> list[DeliveryItem]:
    """Pure: the items of a signed batch one version of it can pay with ``budget`` wei (the
    balance less its gas at its fees), first fit in the batch's order."""
    return _first_fit(items, budget=budget, amount=_item_amount)[0]


def without_largest(items: list[DeliveryItem]) -> list[DeliveryItem]:
    """Pure: the items without the largest one (the newest of equals)."""
    return _largest_removed(items, amount=_item_amount)


def held_error(*, amount: int, budget: int, balance: int) -> str:
    return (
        f"held ({HELD_FOR_FUNDS}): its share of {amount} wei is more than the signer can pay: "
        f"{max(budget, 0)} wei after gas for a batch, of a balance of {balance} wei; "
        "paid by itself once the balance allows"
    )


def _plan(events: list[DeliverableEvent], *, price: Decimal) -> BatchPlan:
    plan = BatchPlan()
    bundles = list(DeliveryBundle.objects.filter(pk__in={e.bundle_id for e in events if e.bundle_id is not None}))
    members = [int(pk) for bundle in bundles for pk in bundle.event_ids]
    # A bundle is sent as formed (its id may be carried by signed bytes already), with the
    # events of it still waiting: one paid on its own by a transaction of the platform's key
    # the platform never signed (adopted) is its payer's. Before, the batch counted it, its
    # submit found one event fewer (DeliveryRace), and every later cycle failed the same way.
    waiting = set(
        RevenueEvent.objects.filter(pk__in=members).filter(status_in(*RETRYABLE_STATUSES)).values_list("pk", flat=True)
    )
    for bundle in sorted(bundles, key=lambda bundle: bundle.pk):
        item = DeliveryItem(
            item_id=bundle_item_id(bundle_id=bundle.pk), stream_id=bundle.stream_id, amount_wei=int(bundle.amount_wei)
        )
        plan.entries.append(
            PlanEntry(item=item, event_ids=tuple(int(pk) for pk in bundle.event_ids if int(pk) in waiting), own=False)
        )
    for event in events:
        if event.bundle_id is not None:
            continue
        wei = holder_share_wei(event, eth_usd_price=price)
        if wei is None:
            plan.unpriced.append(event.id)
        elif is_dust(wei) and not event.signed_alone:
            # Once signed as its own item (a batch abandoned, failed or superseded, whose bytes
            # may still be mined), an event stays its own item: made dust of a bundle, another
            # id, it could be paid twice, and the bundle's other events were left unsendable.
            plan.dust[event.id] = wei
        else:
            item = DeliveryItem(item_id=event.id, stream_id=event.stream_id, amount_wei=wei)
            plan.entries.append(PlanEntry(item=item, event_ids=(event.id,), own=True))
    return plan


def _batch_plan(
    *,
    now: datetime,
    limit: int,
    exclude: set[int],
    stale_only: bool,
    counters: CycleCounters,
    price_of: Callable[[], Decimal],
    budget: int,
    balance: int,
) -> tuple[BatchPlan, Decimal] | None:
    """The next batch's items, within ``budget`` wei; dust met on the way is carried
    forward, unconvertible currencies are critical at once, and an item more than the
    budget is held (its events left out of every batch until a budget fits it: held events
    that fit this one are released first)."""
    price: Decimal | None = None
    if revenue_events_held(limit=1):
        price = price_of()
        counters.events_released += _held_release(budget=budget, price=price)
    for _ in range(PLAN_PASSES):
        events = _deliverable(now=now, limit=limit, exclude=exclude, stale_only=stale_only)
        if not events:
            return None
        if price is None:
            price = price_of()  # OperatorFault when missing or out of bounds
        plan = _plan(events, price=price)
        if plan.unpriced:
            with transaction.atomic(durable=True):
                events_fail(
                    event_ids=plan.unpriced,
                    error="no conversion to wei for this currency",
                    now=now,
                    from_statuses=[DeliveryStatus.PENDING, DeliveryStatus.FAILED],
                    give_up=True,
                )
            counters.events_failed += len(plan.unpriced)
        if plan.dust:
            counters.events_carried += dust_carry(amounts=plan.dust, now=now)
        plan.entries, unpayable = budget_fit(plan.entries, budget=budget)
        if unpayable:
            plan.held = {
                pk: held_error(amount=entry.item.amount_wei, budget=budget, balance=balance)
                for entry in unpayable
                for pk in entry.event_ids
            }
            held = events_hold(errors=plan.held, cause=HELD_FOR_FUNDS, now=now)
            counters.events_held += held
            logger.warning(
                "revenue events held: their share is more than the signer can pay",
                extra={"event_ids": sorted(plan.held)[:50], "budget_wei": budget, "held": held},
            )
        if not plan.dust and not plan.unpriced and not plan.held:
            break
    return (plan, price) if plan.entries and price is not None else None


def _held_release(*, budget: int, price: Decimal) -> int:
    """Held events whose item fits ``budget`` now: released, for the selection to take them
    in their turn (oldest first). A bundle's events are released together: its amount decides."""
    held = revenue_events_held()
    bundles = dict(
        DeliveryBundle.objects.filter(pk__in={e.bundle_id for e in held if e.bundle_id is not None}).values_list(
            "pk", "amount_wei"
        )
    )
    fits = []
    for event in held:
        if event.bundle_id is not None:
            wei: int | None = int(bundles[event.bundle_id])
        else:
            wei = holder_share_wei(event, eth_usd_price=price)
        if wei is not None and wei <= budget:
            fits.append(event.id)
    released = events_release(event_ids=fits)
    if released:
        logger.info("held revenue events fit the signer's balance again", extra={"event_ids": fits[:50]})
    return released


def _deliverable(*, now: datetime, limit: int, exclude: set[int], stale_only: bool) -> list[DeliverableEvent]:
    """The next events to send, none of a batch in flight. Those are `submitted`, so the
    selection itself skips them; the few a batch in flight holds while pending (a foreign
    payment that vanished) are dropped here, and only if that empties the selection is it
    made again with them excluded in SQL."""
    events = revenue_events_deliverable(now=now, limit=limit, stale_only=stale_only)
    kept = [event for event in events if event.id not in exclude]
    if events and not kept:
        kept = revenue_events_deliverable(now=now, limit=limit, exclude_ids=exclude, stale_only=stale_only)
    return kept


def batch_send_next(
    context: ChainContext,
    view: ChainView,
    counters: CycleCounters,
    *,
    now: datetime,
    limit: int,
    stale_only: bool,
    price_of: Callable[[], Decimal],
) -> bool:
    """Select, sign, persist and broadcast the next batch (at the price ``price_of`` gives,
    once per cycle), within what the signer can pay: its balance less the gas a batch is
    given (``budget``). Returns whether a batch was persisted (the caller reconciles again
    before the next one)."""
    in_flight = delivery_batches_in_flight(deployment_id=context.deployment_id)
    max_fee, priority = fees_capped(view)
    budget = view.balance - gas_reserve(view)
    planned = _batch_plan(
        now=now,
        limit=min(limit, MAX_BATCH),
        exclude=in_flight_event_ids(batches=in_flight),
        stale_only=stale_only,
        counters=counters,
        price_of=price_of,
        budget=budget,
        balance=view.balance,
    )
    if planned is None:
        return False
    plan, price = planned
    w3 = context.w3
    nonce = int(chain_call(w3.eth.get_transaction_count, context.signer.address, "pending"))
    for replans in range(REPLANS_FOR_FUNDS + 1):
        last = replans == REPLANS_FOR_FUNDS or len(plan.entries) == 1
        refusal = ""
        try:
            tx = build_delivery_tx(
                w3,
                contract_address=context.contract_address,
                signer_address=context.signer_address,
                items=plan.items,
                nonce=nonce,
                max_fee_per_gas=max_fee,
                max_priority_fee_per_gas=priority,
            )
        except Exception as exc:
            cause = operator_cause(exc)
            if cause == PauseCause.INSUFFICIENT_FUNDS and not last:
                refusal = f"the node refused to simulate it: {error_message(exc)[:300]}"
            elif cause is not None:
                raise OperatorFault(
                    cause, f"the node refused to simulate the batch: {error_message(exc)[:300]}"
                ) from exc
            else:
                kind = classify_error(exc)
                if kind == "transient":
                    raise
                with transaction.atomic(durable=True):
                    events_fail(
                        event_ids=plan.event_ids,
                        error=f"{kind}: {error_message(exc)}",
                        now=now,
                        from_statuses=[DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.CRITICAL],
                    )
                counters.events_failed += len(plan.event_ids)
                raise
        else:
            gas_cost = int(tx["gas"]) * max_fee
            needed = gas_cost + int(tx["value"])
            if view.balance >= needed:
                break
            if last:
                raise OperatorFault(
                    PauseCause.INSUFFICIENT_FUNDS,
                    f"the signer holds {view.balance} wei; the next batch needs {needed} wei (gas and shares)",
                )
            # Its gas is above what the budget kept (the last batches were smaller): the items
            # that fit what its own gas leaves, oldest first; if that is none of them (the gas
            # is most of it), its older half, which takes less gas.
            kept, _ = budget_fit(plan.entries, budget=view.balance - gas_cost)
            if not kept:
                kept = plan.entries[: len(plan.entries) // 2]
            counters.notes.append(
                f"a batch of {len(plan.entries)} items needs {needed} wei, the signer holds {view.balance} wei: "
                f"re-planned with {len(kept)}"
            )
            plan = BatchPlan(entries=kept)
            continue
        # Refused by the node for funds all the same (the balance moved since it was read):
        # the same batch without its largest item, which waits for the next.
        plan = plan.without_largest()
        counters.notes.append(f"a batch of {len(plan.entries) + 1} items re-planned without its largest: {refusal}")
    signed = sign_tx(context.signer, tx)
    with transaction.atomic(durable=True):
        batch = DeliveryBatch.objects.create(
            deployment_id=context.deployment_id,
            size=len(plan.entries),
            item_ids=[item.item_id for item in plan.items],
            stream_ids=[item.stream_id for item in plan.items],
            amounts_wei=[str(item.amount_wei) for item in plan.items],
            event_ids=plan.event_ids,
            value_wei=str(plan.value),
            eth_usd_price=price,
            nonce=nonce,
            gas=int(tx["gas"]),
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority,
            signed_raw_tx=HexBytes(signed.raw_transaction).to_0x_hex(),
            tx_hashes=[signed.tx_hash],
            status=DeliveryBatchStatus.SUBMITTED,
            submitted_block=view.head,
            broadcast_block=view.head,
            submitted_at=now,
            last_broadcast_at=now,
        )
        if events_submit(batch=batch, now=now, amounts=plan.amounts) != len(plan.event_ids):
            raise DeliveryRace(f"events of batch {batch.pk} changed while it was built")
    logger.info(
        "delivery batch submitted",
        extra={"batch_id": batch.pk, "items": len(plan.entries), "nonce": nonce, "tx_hash": signed.tx_hash},
    )
    counters.batches_sent += 1
    counters.items_sent += len(plan.entries)
    counters.events_sent += len(plan.event_ids)
    batch_broadcast(context, view, batch, counters, now=now)
    return True


# --------------------------------------------------------------------------- broadcasting


def _signed_of(batch: DeliveryBatch) -> SignedTx:
    return SignedTx(bytes(HexBytes(batch.signed_raw_tx)), batch.tx_hashes[-1])


def batch_broadcast(
    context: ChainContext,
    view: ChainView,
    batch: DeliveryBatch,
    counters: CycleCounters,
    *,
    now: datetime,
    replace_if_underpriced: bool = True,
    shrink_for_funds: bool = True,
) -> bool:
    """Send the batch's latest signed bytes; returns whether the node took them. A refusal
    never fails a batch the node may hold in some form; only a fatal refusal of a batch
    no version of which the node knows does, with one attempt of its events. Refused for
    funds, it is re-signed smaller at its nonce (batch_shrink_for_funds)."""
    try:
        send_signed(context.w3, _signed_of(batch))
        return True
    except ChainUnavailable:
        raise  # ambiguous (the node may have it): the batch stays for reconciliation
    except Exception as exc:
        message = f"{classify_error(exc)}: {error_message(exc)}"
        batch_error_note(batch=batch, error=message)
        cause = operator_cause(exc)
        if cause == PauseCause.INSUFFICIENT_FUNDS and shrink_for_funds and batch.size > 1:
            return batch_shrink_for_funds(context, view, batch, counters, now=now, refusal=error_message(exc)[:200])
        if cause is not None:
            raise OperatorFault(cause, f"the node refused batch {batch.pk}: {error_message(exc)[:300]}") from exc
        if is_underpriced(exc):
            if replace_if_underpriced:
                batch_replace(context, view, batch, counters, now=now, reason=f"refused: {error_message(exc)[:200]}")
            else:
                counters.notes.append(f"batch {batch.pk}: re-signed version refused as underpriced")
            return False
        if is_nonce_too_low(exc) or classify_error(exc) == "transient":
            counters.notes.append(f"batch {batch.pk}: broadcast refused for now: {error_message(exc)[:200]}")
            return False
        if _batch_unknown_to_node(context, batch):
            batch_fail(batch=batch, error=f"refused by the node: {message}", now=now)
            counters.events_failed += len(batch.event_ids)
        logger.warning("delivery broadcast refused", extra={"batch_id": batch.pk, "error": message[:300]})
        return False


def _batch_unknown_to_node(context: ChainContext, batch: DeliveryBatch) -> bool:
    w3 = context.w3
    return all(receipt_or_none(w3, tx_hash) is None and not tx_known(w3, tx_hash) for tx_hash in batch.tx_hashes)


def batch_rebroadcast(
    context: ChainContext, view: ChainView, batch: DeliveryBatch, counters: CycleCounters, *, now: datetime
) -> None:
    """The node lost the transaction (dropped, restarted, reorged out): the same signed
    bytes again, same nonce, same hash; re-signed with higher fees if they are refused
    as underpriced."""
    DeliveryBatch.objects.filter(pk=batch.pk).update(last_broadcast_at=now, broadcast_block=view.head)
    if batch_broadcast(context, view, batch, counters, now=now):
        counters.rebroadcasts += 1
        logger.info("delivery transaction rebroadcast", extra={"batch_id": batch.pk, "tx_hash": batch.tx_hashes[-1]})


def _items(batch: DeliveryBatch) -> list[DeliveryItem]:
    return [
        DeliveryItem(item_id=int(item_id), stream_id=int(stream_id), amount_wei=int(amount))
        for item_id, stream_id, amount in zip(batch.item_ids, batch.stream_ids, batch.amounts_wei, strict=True)
    ]


def _resign(
    context: ChainContext,
    view: ChainView,
    batch: DeliveryBatch,
    counters: CycleCounters,
    *,
    items: list[DeliveryItem],
    nonce: int,
    max_fee: int,
    priority: int,
    now: datetime,
    reason: str,
    left_out: list[DeliveryItem] | None = None,
    shrink_for_funds: bool = True,
) -> bool:
    """A newly signed version of the batch (its items, maybe fewer); every hash is kept,
    so whichever version is mined is found. ``left_out``: items of its latest version this
    one leaves out at the same nonce, whose events stay with the batch until the version
    mined is known. Returns whether the node took it."""
    tx = build_delivery_tx(
        context.w3,
        contract_address=context.contract_address,
        signer_address=context.signer_address,
        items=items,
        nonce=nonce,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        gas=batch.gas,  # explicit: the first estimate, with its margin, covers as many items or fewer
    )
    signed = sign_tx(context.signer, tx)
    carried = items_events(item_ids=(item.item_id for item in items))
    batch.item_ids = [item.item_id for item in items]
    batch.stream_ids = [item.stream_id for item in items]
    batch.amounts_wei = [str(item.amount_wei) for item in items]
    batch.event_ids = [event for item in items for event in carried[item.item_id]]
    batch.size = len(items)
    batch.value_wei = str(sum(item.amount_wei for item in items))
    batch.tx_hashes = [*batch.tx_hashes, signed.tx_hash]
    batch.signed_raw_tx = HexBytes(signed.raw_transaction).to_0x_hex()
    batch.nonce, batch.max_fee_per_gas, batch.max_priority_fee_per_gas = nonce, max_fee, priority
    batch.last_broadcast_at, batch.broadcast_block = now, view.head
    if left_out:
        known = {int(item) for item in batch.left_out_item_ids}
        batch.left_out_item_ids = sorted(known | {item.item_id for item in left_out})
    with transaction.atomic(durable=True):
        DeliveryBatch.objects.filter(pk=batch.pk, status=DeliveryBatchStatus.SUBMITTED).update(
            item_ids=batch.item_ids,
            stream_ids=batch.stream_ids,
            amounts_wei=batch.amounts_wei,
            event_ids=batch.event_ids,
            size=batch.size,
            value_wei=batch.value_wei,
            tx_hashes=batch.tx_hashes,
            signed_raw_tx=batch.signed_raw_tx,
            nonce=nonce,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority,
            last_broadcast_at=now,
            broadcast_block=view.head,
            left_out_item_ids=batch.left_out_item_ids,
        )
        events_tx_hash_set(batch=batch)
    logger.info(
        "delivery transaction re-signed",
        extra={"batch_id": batch.pk, "reason": reason, "nonce": nonce, "tx_hash": signed.tx_hash, "max_fee": max_fee},
    )
    return batch_broadcast(
        context, view, batch, counters, now=now, replace_if_underpriced=False, shrink_for_funds=shrink_for_funds
    )


def batch_shrink_for_funds(
    context: ChainContext,
    view: ChainView,
    batch: DeliveryBatch,
    counters: CycleCounters,
    *,
    now: datetime,
    refusal: str,
) -> bool:
    """The node refused the batch's latest version for funds (the balance moved since it was
    planned: a withdrawal from the signer, fees that rose; or a fee bump the balance cannot
    pay). Re-signed at the same nonce and fees with the items the balance pays at them (read
    again), or without its largest item when the balance read pays them all, at most
    REPLANS_FOR_FUNDS times. An earlier version may have reached a pool (a send that timed
    out): only one version can be mined, and the items left out stay with this batch
    (``left_out_item_ids``) until it is known which (batch_mined_record, batch_confirm).
    Only a batch of one item the balance cannot pay pauses delivery (its gas is not there)."""
    w3 = context.w3
    items = _items(batch)
    for _ in range(REPLANS_FOR_FUNDS):
        balance = int(chain_call(w3.eth.get_balance, context.signer.address))
        kept = items_fit(items, budget=balance - batch.gas * batch.max_fee_per_gas)
        if len(kept) == len(items) and len(items) > 1:
            kept = without_largest(items)  # the node sees less than the balance read
        if not kept or len(kept) == len(items):
            break
        left = [item for item in items if item not in kept]
        counters.notes.append(
            f"batch {batch.pk}: refused for funds ({refusal}); re-signed at nonce {batch.nonce} "
            f"with {len(kept)} of its {len(items)} items"
        )
        logger.warning(
            "delivery batch refused for funds: re-signed smaller at its nonce",
            extra={"batch_id": batch.pk, "nonce": batch.nonce, "items": len(kept), "left_out": len(left)},
        )
        try:
            return _resign(
                context, view, batch, counters, items=kept, nonce=batch.nonce, max_fee=batch.max_fee_per_gas,
                priority=batch.max_priority_fee_per_gas, now=now, reason=f"refused for funds: {refusal}",
                left_out=left, shrink_for_funds=False,
            )  # fmt: skip
        except OperatorFault as fault:
            if fault.cause != PauseCause.INSUFFICIENT_FUNDS:
                raise
            refusal = fault.detail[:200]
            items = kept
    raise OperatorFault(
        PauseCause.INSUFFICIENT_FUNDS,
        f"the node refused batch {batch.pk} for funds and the signer cannot pay a smaller version: {refusal}",
    )


def batch_replace(
    context: ChainContext, view: ChainView, batch: DeliveryBatch, counters: CycleCounters, *, now: datetime, reason: str
) -> None:
    """Stuck or underpriced: the same nonce with higher fees. At the fee cap, a
    transaction priced out of blocks is the fault ``fees_above_cap``; one that can still be
    mined waits."""
    fees = replacement_fees(
        old_max=batch.max_fee_per_gas,
        old_priority=batch.max_priority_fee_per_gas,
        suggested_max=view.max_fee,
        suggested_priority=view.priority_fee,
        cap=settings.DELIVERY_MAX_FEE_PER_GAS_WEI,
    )
    if fees is None or fees[0] < view.next_base_fee:
        message = (
            f"batch {batch.pk} ({reason}) needs fees above DELIVERY_MAX_FEE_PER_GAS_WEI "
            f"{settings.DELIVERY_MAX_FEE_PER_GAS_WEI} (it offers {batch.max_fee_per_gas}, "
            f"next base fee {view.next_base_fee})"
        )
        batch_error_note(batch=batch, error=message)
        if batch.max_fee_per_gas < view.next_base_fee:
            raise OperatorFault(PauseCause.FEES_ABOVE_CAP, message)
        counters.notes.append(message)
        return
    # The replacement's gas costs more (fees +12.5% at least): with a value near the whole
    # budget, the balance may not pay it. It then carries the items the balance pays at the
    # higher fee (oldest first); those left out stay with this nonce, since the version in
    # the pool may still be mined. Before, it was refused for funds: delivery paused.
    items = _items(batch)
    kept = items_fit(items, budget=view.balance - batch.gas * fees[0])
    if not kept:
        raise OperatorFault(
            PauseCause.INSUFFICIENT_FUNDS,
            f"batch {batch.pk} ({reason}): the signer holds {view.balance} wei, less than the gas of a "
            f"replacement at {fees[0]} wei/gas and its smallest item",
        )
    left = [item for item in items if item not in kept]
    if left:
        counters.notes.append(
            f"batch {batch.pk}: replaced with {len(kept)} of its {len(items)} items, what the balance pays at "
            f"{fees[0]} wei/gas"
        )
    _resign(
        context, view, batch, counters, items=kept, nonce=batch.nonce, max_fee=fees[0], priority=fees[1],
        now=now, reason=reason, left_out=left,
    )  # fmt: skip
    counters.replacements += 1


def batch_rebuild(
    context: ChainContext, view: ChainView, batch: DeliveryBatch, counters: CycleCounters, *, now: datetime
) -> None:
    """Its nonce was used by another transaction: the same batch at the next free nonce,
    without the items another transaction of the chain paid meanwhile."""
    owners = dict(RevenueEvent.objects.filter(pk__in=batch.event_ids).values_list("pk", lookup(Key.BATCH_ID)))
    carried = items_events(item_ids=(int(item) for item in batch.item_ids))
    items = [item for item in _items(batch) if all(owners.get(e) == batch.pk for e in carried[item.item_id])]
    if not items:
        batch_supersede(batch=batch, reason="every item was paid by other transactions")
        counters.notes.append(f"batch {batch.pk}: every item was paid by other transactions")
        return
    nonce = int(chain_call(context.w3.eth.get_transaction_count, context.signer.address, "pending"))
    max_fee, priority = fees_capped(view)
    _resign(
        context, view, batch, counters, items=items, nonce=nonce, max_fee=max_fee, priority=priority, now=now,
        reason=f"rebuild: nonce {batch.nonce} was used by another transaction",
    )  # fmt: skip
    counters.rebuilds += 1


def nonce_gaps_fill(
    context: ChainContext, view: ChainView, counters: CycleCounters, *, lowest_nonce: int | None
) -> int:
    """Nonces below our lowest unmined batch that no transaction holds (mined or in the
    pool) keep it from ever being mined: fill each with a 0-value transfer to the signer."""
    if lowest_nonce is None:
        return 0
    w3 = context.w3
    pending = int(chain_call(w3.eth.get_transaction_count, context.signer.address, "pending"))
    max_fee, priority = fees_capped(view)
    for nonce in range(pending, lowest_nonce):
        tx = build_self_transfer_tx(
            w3,
            signer_address=context.signer_address,
            nonce=nonce,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority,
        )
        tx_hash = send_signed(w3, sign_tx(context.signer, tx))
        counters.gaps_filled += 1
        logger.warning("nonce gap filled with a 0-value self-transfer", extra={"nonce": nonce, "tx_hash": tx_hash})
    return max(0, lowest_nonce - pending)
