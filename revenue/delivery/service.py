"""The delivery cycle: reconcile, then send, as the only sender."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.metrics import CHAIN_REACHABLE, REDRIVE_BATCH_SIZE
from revenue.chain.client import MAX_BATCH, TransientChainError, classify_error, error_message
from revenue.chain.runtime import ChainContext, chain_context_get, embedded_block_mine
from revenue.delivery.broadcast import CycleCounters, batch_send_next
from revenue.delivery.heartbeat import delivery_heartbeat_write
from revenue.delivery.lock import delivery_sender_lock
from revenue.delivery.reconcile import deliveries_reconcile
from revenue.delivery.selectors import revenue_events_deliverable_exist
from revenue.delivery.transitions import revenue_event_delivery_retry as _event_retry

logger = logging.getLogger("revenue.delivery")


@dataclass
class DeliveryCycleResult:
    task: str
    ran: bool = False
    skipped: str = ""  # "disabled" or "busy" (another sender holds the lock)
    counters: CycleCounters = field(default_factory=CycleCounters)
    error: str = ""
    error_kind: str = ""  # transient | already_delivered | fatal | config

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("counters"))
        return data

    def raise_for_transient(self) -> None:
        """For the task: a transient chain failure is retried by Celery with backoff."""
        if self.error_kind == "transient":
            raise TransientChainError(self.error)


def revenue_events_deliver(*, max_batches: int, redrive: bool = False) -> DeliveryCycleResult:
    """One delivery cycle. Reconciles every batch in flight first, then, while no batch
    is waiting to be mined, sends up to ``max_batches`` new batches (each followed by a
    reconciliation). Chain errors are recorded on the events, batches and heartbeat and
    returned in the result, never raised. Returns at once if another sender is running."""
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
        try:
            context = chain_context_get()
            embedded_block_mine(context)
            _cycle(context, result.counters, max_batches=max_batches, redrive=redrive)
            CHAIN_REACHABLE.set(1)
        except Exception as exc:  # recorded, never raised: the next cycle reconciles from the chain
            _error_record(result, exc)
        finally:
            delivery_heartbeat_write(
                context=context, task=result.task, result=result.as_dict(), error=result.error, now=timezone.now()
            )
    return result


def revenue_events_redrive() -> DeliveryCycleResult:
    """The periodic safety net: reconciles (confirmations accrue even when no trade
    happens), re-drives up to DELIVERY_REDRIVE_BATCH failed-and-due or stale pending
    events, and publishes a full run if more are waiting."""
    result = revenue_events_deliver(max_batches=1, redrive=True)
    REDRIVE_BATCH_SIZE.observe(result.counters.events_sent)
    if result.ran and not result.error and revenue_events_deliverable_exist(now=timezone.now()):
        from revenue.dispatch import revenue_delivery_dispatch

        revenue_delivery_dispatch()
    return result


def revenue_event_delivery_retry(*, event_id: int) -> bool:
    """Staff: queue a failed or critical event for delivery again (fresh attempts)."""
    return _event_retry(event_id=event_id, now=timezone.now())


def _cycle(context: ChainContext, counters: CycleCounters, *, max_batches: int, redrive: bool) -> None:
    limit = settings.DELIVERY_REDRIVE_BATCH if redrive else settings.DELIVERY_BATCH_SIZE
    limit = max(1, min(limit, MAX_BATCH))
    for _ in range(max(1, max_batches)):
        if deliveries_reconcile(context, counters, now=timezone.now()):
            return  # a batch waits to be mined: its nonce and sequences come first
        if max_batches < 1 or not batch_send_next(
            context, counters, now=timezone.now(), limit=limit, stale_only=redrive
        ):
            return


def _error_record(result: DeliveryCycleResult, exc: Exception) -> None:
    from revenue.delivery.broadcast import DeliveryNotConfigured

    kind = "config" if isinstance(exc, DeliveryNotConfigured) else classify_error(exc)
    result.error_kind = kind
    result.error = f"{type(exc).__name__}: {error_message(exc)}"[:2000]
    if kind == "transient":
        CHAIN_REACHABLE.set(0)
        logger.warning("delivery cycle interrupted by a transient chain error", extra={"error": result.error})
    else:
        logger.error("delivery cycle failed", extra={"error": result.error}, exc_info=exc)
