"""Retention of the trade outbox (orders.models.TradeOutbox; docs/operations.md, "Retention").

A row exists so that revenue turns its trade's fees into revenue events exactly once; once
it is `done` nothing reads it again (a task replayed later finds no row and does nothing,
as it found a done one), while one row per trade ever made stayed in the table for good.
The records are the trade and its revenue events, which stay; the consumed rows go once
they are TRADE_OUTBOX_RETENTION_DAYS old (a week by default: time to look at a recent
one in the admin). Pending rows stay whatever their age: they are the work still to do."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from orders.models import TradeOutbox, TradeOutboxStatus

logger = logging.getLogger("orders.outbox")

# Rows deleted per transaction: short locks, and a run that stops half-way keeps what it did.
PRUNE_BATCH = 10_000


def trade_outbox_consumed_delete(*, older_than: timedelta, batch: int = PRUNE_BATCH, rounds: int = 100) -> int:
    """Deletes the `done` outbox rows created more than `older_than` ago, `batch` a
    transaction, at most `rounds` of them (the next run takes the rest): how many. Each
    round reads the oldest ids first (the primary key in order: the pending partial index
    is not needed, and the rows left behind are the few still pending)."""
    cutoff = timezone.now() - older_than
    deleted = 0
    for _ in range(rounds):
        with transaction.atomic():
            ids = list(
                TradeOutbox.objects.filter(status=TradeOutboxStatus.DONE, created_at__lt=cutoff)
                .order_by("id")
                .values_list("id", flat=True)[:batch]
            )
            if ids:
                TradeOutbox.objects.filter(pk__in=ids, status=TradeOutboxStatus.DONE).delete()
        deleted += len(ids)
        if len(ids) < batch:
            break
    if deleted:
        logger.info("consumed trade outbox rows deleted", extra={"deleted": deleted, "before": cutoff.isoformat()})
    return deleted
