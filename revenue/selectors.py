"""Read selectors of the revenue app."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from orders.models import TradeOutbox, TradeOutboxStatus


def post_trade_jobs_stale(*, older_than_seconds: int, limit: int) -> list[int]:
    """Trades in orders' outbox whose task apparently never ran (broker down, worker killed)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        TradeOutbox.objects.filter(status=TradeOutboxStatus.PENDING, created_at__lte=cutoff)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def post_trade_jobs_untried(*, limit: int) -> list[int]:
    """Pending jobs no task has tried yet, oldest first (a job that failed waits for the
    sweep, so that one bad job is not retried by every publication)."""
    return list(
        TradeOutbox.objects.filter(status=TradeOutboxStatus.PENDING, attempts=0)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
