"""The delivery cycle: read the chain, reconcile, then send, as the only sender.

An operator-level fault (revenue.chain.errors.PauseCause: node unreachable, wrong chain,
no contract, contract paused, signer refused, no funds, fees above the cap, no price or
a price out of bounds) pauses sending: it is recorded with its cause, alerted, and uses
no event's attempts; the first cycle that finds the cause gone resumes by itself.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.metrics import CHAIN_REACHABLE, REDRIVE_BATCH_SIZE
from revenue.chain.client import (
    MAX_BATCH,
    ChainUnavailable,
    OperatorFault,
    PauseCause,
    TransientChainError,
    classify_error,
    error_message,
)
from revenue.chain.runtime import ChainContext, chain_context_get, embedded_block_mine
from revenue.delivery.broadcast import batch_send_next
from revenue.delivery.conditions import (
    batches_stuck_alert,
    delivery_pause_cause,
    delivery_pause_clear,
    delivery_pause_set,
    held_events_alert,
    signer_balance_watch,
)
from revenue.delivery.cycle import CycleCounters
from revenue.delivery.dust import dust_bundles_form
from revenue.delivery.health import ChainView, chain_view_read, low_balance_threshold, sending_fault
from revenue.delivery.heartbeat import delivery_heartbeat_write
from revenue.delivery.lock import delivery_sender_lock
from revenue.delivery.pricing import delivery_price_checked
from revenue.delivery.reconcile import deliveries_reconcile
from revenue.delivery.selectors import revenue_events_deliverable_exist
from revenue.delivery.transitions import events_attempts_exhausted_give_up
from revenue.delivery.transitions import revenue_event_delivery_retry as _event_retry
from revenue.dispatch import revenue_delivery_dispatch

logger = logging.getLogger("revenue.delivery")

# Causes only a price check re-examines (the chain view checks the others every cycle).
PRICE_CAUSES = frozenset({PauseCause.PRICE_UNAVAILABLE, PauseCause.PRICE_OUT_OF_BOUNDS})


@dataclass
class DeliveryCycleResult:
    task: str
    ran: bool = False
    skipped: str = ""  # "disabled" or "busy" (another sender holds the lock)
    counters: CycleCounters = field(default_factory=CycleCounters)
    paused: str = ""  # the PauseCause that stopped sending, if any
    error: str = ""
    error_kind: str = ""  # transient | operator | fatal

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("counters"))
        return data

    def raise_for_transient(self) -> None:
        """For the task: a transient chain failure (a node down is one) is retried by
        Celery with backoff; the periodic re-drive retries whatever lasts longer."""
        if self.error_kind == "transient":
            raise TransientChainError(self.error)


def revenue_events_deliver(*, max_batches: int, redrive: bool = False) -> DeliveryCycleResult:
    """One delivery cycle. Reconciles every batch in flight first, then, while no batch
    is waiting to be mined and nothing pauses sending, sends up to ``max_batches`` new
    batches (each followed by a reconciliation). Chain errors are recorded on the batches,
    the worker's state and the result, never raised. Returns at once if another sender
    is running."""
    result = DeliveryCycleResult(task="redrive" if redrive else "run")
    if not settings.DELIVERY_ENABLED:
        result.skipped = "disabled"
        return result
    with delivery_sender_lock() as acquired:
        if not acquired:
            result.skipped = "busy"
            return result
        result.ran = True
        context: ChainContext | None = None
        view: ChainView | None = None
        try:
            context = chain_context_get()
            embedded_block_mine(context)
            view = _cycle(context, result, max_batches=max_batches, redrive=redrive)
            CHAIN_REACHABLE.set(1)
        except OperatorFault as fault:
            _pause(result, fault)
        except ChainUnavailable as exc:
            CHAIN_REACHABLE.set(0)
            _pause(result, OperatorFault(PauseCause.NODE_UNREACHABLE, error_message(exc)[:500]))
        except Exception as exc:  # recorded, never raised: the next cycle reconciles from the chain
            _error_record(result, exc)
        finally:
            delivery_heartbeat_write(
                context=context, view=view, task=result.task, result=result.as_dict(), error=result.error,
                now=timezone.now(),
            )  # fmt: skip
    return result


def revenue_events_redrive() -> DeliveryCycleResult:
    """The periodic safety net: reconciles (confirmations accrue even when no trade
    happens; a pause is re-checked and lifted), re-drives up to DELIVERY_REDRIVE_BATCH
    failed-and-due or stale pending events, and publishes a full run if more are waiting."""
    result = revenue_events_deliver(max_batches=1, redrive=True)
    REDRIVE_BATCH_SIZE.observe(result.counters.events_sent)
    if result.ran and not result.error and revenue_events_deliverable_exist(now=timezone.now()):
        revenue_delivery_dispatch()
    return result


def revenue_event_delivery_retry(*, event_id: int) -> bool:
    """Staff: queue a failed or critical event for delivery again (fresh attempts)."""
    return _event_retry(event_id=event_id, now=timezone.now())


def _cycle(context: ChainContext, result: DeliveryCycleResult, *, max_batches: int, redrive: bool) -> ChainView:
    counters = result.counters
    limit = settings.DELIVERY_REDRIVE_BATCH if redrive else settings.DELIVERY_BATCH_SIZE
    limit = max(1, min(limit, MAX_BATCH))
    fault: OperatorFault | None = None
    view = chain_view_read(context)  # a node on another chain or no contract: nothing to read
    price_of = functools.cache(lambda: delivery_price_checked(now=timezone.now()))
    try:
        for sent in range(max(1, max_batches) + 1):
            now = timezone.now()
            if sent:
                view = chain_view_read(context, previous=view)
            waiting = deliveries_reconcile(context, view, counters, now=now)
            fault = sending_fault(view)
            if waiting or fault is not None or sent >= max(1, max_batches):
                break  # a batch waiting to be mined comes first: its nonce precedes the next
            if not sent:
                counters.bundles_formed += len(dust_bundles_form(now=now))
            if not batch_send_next(
                context, view, counters, now=now, limit=limit, stale_only=redrive, price_of=price_of
            ):
                break
    except OperatorFault as raised:  # met while re-signing or sending (funds, fee cap, price)
        fault = raised
    now = timezone.now()
    signer_balance_watch(balance=view.balance, threshold=low_balance_threshold(view), now=now)
    batches_stuck_alert(now=now)
    held_events_alert(balance=view.balance, now=now)
    if redrive:  # the periodic safety net: a lowered DELIVERY_MAX_ATTEMPTS left these failed for ever
        counters.events_given_up += len(events_attempts_exhausted_give_up(now=now))
    if fault is not None:
        raise fault
    if delivery_pause_cause() in PRICE_CAUSES:
        delivery_price_checked(now=now)  # still wrong: raises, the pause stays
    delivery_pause_clear(now=now)  # sending was possible: whatever paused it is gone
    return view


def _pause(result: DeliveryCycleResult, fault: OperatorFault) -> None:
    result.paused = str(fault.cause)
    result.error_kind = "transient" if fault.cause == PauseCause.NODE_UNREACHABLE else "operator"
    result.error = f"{fault.cause}: {fault.detail}"[:2000]
    delivery_pause_set(fault=fault, now=timezone.now())
    logger.warning("delivery paused", extra={"cause": str(fault.cause), "detail": fault.detail[:500]})


def _error_record(result: DeliveryCycleResult, exc: Exception) -> None:
    kind = classify_error(exc)
    result.error_kind = kind
    result.error = f"{type(exc).__name__}: {error_message(exc)}"[:2000]
    if kind == "transient":
        logger.warning("delivery cycle interrupted by a transient chain error", extra={"error": result.error})
    else:
        logger.error("delivery cycle failed", extra={"error": result.error}, exc_info=exc)
