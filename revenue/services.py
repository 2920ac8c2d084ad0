"""Write services of the revenue app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.logging import correlation_id_get, correlation_id_new
from revenue.models import PostTradeJob

if TYPE_CHECKING:
    from orders.models import Trade


def post_trade_jobs_record(*, trades: Sequence[Trade]) -> list[PostTradeJob]:
    """Called inside the matching transaction: one outbox row per trade, one statement."""
    correlation_id = correlation_id_get()
    if correlation_id == "-":
        correlation_id = correlation_id_new()
    jobs = [
        PostTradeJob(trade=trade, correlation_id=correlation_id, created_at=trade.executed_at) for trade in trades
    ]
    return PostTradeJob.objects.bulk_create(jobs)
