"""Row locks of the revenue app."""

from __future__ import annotations

from orders.models import TradeOutbox


def lock_trade_outbox(*, outbox_id: int) -> TradeOutbox | None:
    return (
        TradeOutbox.objects.select_for_update(of=("self",))
        .select_related("trade__market__quote")
        .filter(pk=outbox_id)
        .first()
    )
