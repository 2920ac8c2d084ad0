"""Read selectors of the revenue app."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from revenue.models import PostTradeJob, PostTradeJobStatus


def post_trade_jobs_stale(*, older_than_seconds: int, limit: int) -> list[int]:
    """Pending jobs whose task apparently never ran (broker down, worker killed)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        PostTradeJob.objects.filter(status=PostTradeJobStatus.PENDING, created_at__lte=cutoff)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
