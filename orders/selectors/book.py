from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from django.db.models import Count, F, Sum

from core.db import money_param, rows_select
from core.db import quote_name as q
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
    two makers reads two rows, not the book. Written out (core.db.rows_select): it runs
    on every order."""
    price, pk = q("price"), q("id")
    buying = side == OrderSide.BUY  # best bid first: highest price; best ask: lowest
    where = f"{q('market_id')} = %s AND {q('side')} = %s AND {q('status')} IN (%s, %s)"
    params: list[object] = [market_id, side.value, *(status.value for status in RESTING_STATUSES)]
    worse = f"({price} {'<' if buying else '>'} %s OR ({price} = %s AND {pk} > %s))"
    order_by = f"{price} {'DESC' if buying else 'ASC'}, {pk} ASC"
    page_size = first_page
    last: Order | None = None
    while True:
        keyset = (
            []
            if last is None
            else [money_param(cast(Decimal, last.price)), money_param(cast(Decimal, last.price)), last.pk]
        )
        page = rows_select(
            Order,
            where=where if last is None else f"{where} AND {worse}",
            params=params + keyset,
            fields=MAKER_FIELDS,
            order_by=order_by,
            limit=page_size,
        )
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
