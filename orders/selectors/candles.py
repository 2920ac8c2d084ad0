"""OHLCV candles aggregated in SQL from trades: one grouped query plus one for the
open/close prices, whatever the number of trades."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import BigIntegerField, Func, Max, Min, Sum
from django.utils import timezone

from orders.models import Trade

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


class EpochBucket(Func):
    """floor(unix seconds of the expression / seconds): the candle a trade belongs to."""

    output_field = BigIntegerField()
    template = "FLOOR(EXTRACT(EPOCH FROM %(expressions)s) / %(seconds)s)"

    def __init__(self, expression: Any, *, seconds: int) -> None:
        super().__init__(expression, seconds=int(seconds))

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        template = "(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) / %(seconds)s)"
        return self.as_sql(compiler, connection, template=template, **extra_context)


@dataclass(frozen=True, slots=True)
class Candle:
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def candle_list(*, market_id: int, interval: str, limit: int) -> list[Candle]:
    seconds = INTERVALS[interval]
    now_bucket = int(timezone.now().timestamp()) // seconds
    since = datetime.fromtimestamp((now_bucket - limit + 1) * seconds, tz=UTC)
    rows = list(
        Trade.objects.filter(market_id=market_id, executed_at__gte=since)
        .annotate(bucket=EpochBucket("executed_at", seconds=seconds))
        .values("bucket")
        .annotate(high=Max("price"), low=Min("price"), volume=Sum("quantity"), first_id=Min("id"), last_id=Max("id"))
        .order_by("bucket")
    )
    edge_ids = {r["first_id"] for r in rows} | {r["last_id"] for r in rows}
    prices = dict(Trade.objects.filter(pk__in=edge_ids).values_list("pk", "price"))
    return [
        Candle(
            time=datetime.fromtimestamp(int(r["bucket"]) * seconds, tz=UTC),
            open=prices[r["first_id"]],
            high=r["high"],
            low=r["low"],
            close=prices[r["last_id"]],
            volume=r["volume"],
        )
        for r in rows
    ]
