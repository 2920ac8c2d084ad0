from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from django.db.models import Count, F, Q, Sum

from orders.models import RESTING_STATUSES, Order, OrderSide

# Columns settlement reads from a maker or writes back (orders.services.orders._write):
# nothing else is loaded on the hot path, and a column written back but not loaded would
# cost a query per maker (Django loads a deferred field on first access).
MAKER_FIELDS = (
    "id",
    "user_id",
    "side",
    "price",
    "quantity",
    "filled_quantity",
    "quote_filled",
    "fee_paid",
    "locked_amount",
    "status",
    "status_reason",
    "time_in_force",
    "updated_at",
    "filled_at",
    "closed_at",
)


def resting_makers(*, market_id: int, side: OrderSide, first_page: int = 8, max_page: int = 512) -> Iterator[Order]:
    """Resting orders of one side in priority order (best price, then oldest), fetched
    lazily in growing keyset pages through the partial book index: an order that meets
    two makers reads two rows, not the book."""
    best_first = ("-price", "id") if side == OrderSide.BUY else ("price", "id")
    base = Order.objects.filter(market_id=market_id, side=side, status__in=RESTING_STATUSES).only(*MAKER_FIELDS)
    page_size = first_page
    last: Order | None = None
    while True:
        query = base
        if last is not None:
            worse = Q(price__lt=last.price) if side == OrderSide.BUY else Q(price__gt=last.price)
            query = query.filter(worse | Q(price=last.price, id__gt=last.pk))
        page = list(query.order_by(*best_first)[:page_size])
        yield from page
        if len(page) < page_size:
            return
        last = page[-1]
        page_size = min(page_size * 4, max_page)


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    quantity: Decimal
    orders: int


def order_book_get(*, market_id: int, depth: int) -> dict[str, list[BookLevel]]:
    """The book aggregated per price level, best first, `depth` levels per side."""
    result: dict[str, list[BookLevel]] = {}
    for key, side, ordering in (("bids", OrderSide.BUY, "-price"), ("asks", OrderSide.SELL, "price")):
        rows = (
            Order.objects.filter(market_id=market_id, side=side, status__in=RESTING_STATUSES)
            .values("price")
            .annotate(quantity=Sum(F("quantity") - F("filled_quantity")), orders=Count("id"))
            .order_by(ordering)[:depth]
        )
        result[key] = [
            BookLevel(price=cast(Decimal, r["price"]), quantity=r["quantity"], orders=r["orders"]) for r in rows
        ]
    return result
