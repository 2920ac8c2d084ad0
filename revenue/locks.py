"""Row locks of the revenue app."""

from __future__ import annotations

from revenue.models import PostTradeJob


def lock_post_trade_job(*, job_id: int) -> PostTradeJob | None:
    return (
        PostTradeJob.objects.select_for_update(of=("self",))
        .select_related("trade__market__quote")
        .filter(pk=job_id)
        .first()
    )
