from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from django.db import connection
from django.db.models import Count, F, Sum

from core.db import money_sums
from core.money import exact_arithmetic
from orders.models import RESTING_STATUSES, Order, OrderSide


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    quantity: Decimal
    orders: int


def order_book_get(*, market_id: int, depth: int) -> dict[str, list[BookLevel]]:
    """The book aggregated per price level, best first, `depth` levels per side. Exact:
    PostgreSQL sums NUMERIC in SQL; SQLite's SUM would add the text columns as floats (15
    significant digits), so there the levels' remainders are summed in Decimal
    (core.db.money_sums), one statement more per side."""
    result: dict[str, list[BookLevel]] = {}
    for key, side, ordering in (("bids", OrderSide.BUY, "-price"), ("asks", OrderSide.SELL, "price")):
        resting = Order.objects.filter(market_id=market_id, side=side, status__in=RESTING_STATUSES)
        rows = list(
            resting.values("price")
            .annotate(quantity=Sum(F("quantity") - F("filled_quantity")), orders=Count("id"))
            .order_by(ordering)[:depth]
        )
        if connection.vendor != "postgresql" and rows:
            sums = money_sums(
                resting.filter(price__in=[row["price"] for row in rows]),
                group_by="price",
                fields=["quantity", "filled_quantity"],
            )
            with exact_arithmetic():
                for row in rows:
                    quantity, filled = sums[row["price"]]
                    row["quantity"] = quantity - filled
        result[key] = [
            BookLevel(price=cast(Decimal, r["price"]), quantity=r["quantity"], orders=r["orders"]) for r in rows
        ]
    return result
