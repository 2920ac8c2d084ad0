from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from django.db.models import Count, F, Sum

from orders.models import RESTING_STATUSES, Order, OrderSide


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
