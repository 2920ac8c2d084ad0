"""OHLCV candles aggregated in SQL from trades: a grouped query for the prices, one for the
open/close prices and the volumes' exact sums (core.db.money_sums: in SQL on PostgreSQL, in
Python on SQLite, whose SUM of the text amounts is floating point), whatever the number of
trades."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import BigIntegerField, F, Func, Max, Min, QuerySet
from django.utils import timezone

from core.db import money_sums
from orders.models import Trade

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


class EpochBucket(Func):
    """floor(unix seconds of the expression / seconds): the candle a trade belongs to."""

    output_field = BigIntegerField()
    template = "FLOOR(EXTRACT(EPOCH FROM %(expressions)s) / %(seconds)s)"

    def __init__(self, expression: Any, *, seconds: int) -> None:
        super().__init__(expression, seconds=int(seconds))

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        # The stored text's seconds only ('YYYY-MM-DD HH:MM:SS', its first 19 characters):
        # SQLite rounds a time to the millisecond before strftime, and a trade at
        # 23:59:59.9995 or later fell into the next minute, hour and day (the streams'
        # candles and PostgreSQL's floor it into its own).
        template = "(CAST(strftime('%%%%s', substr(%(expressions)s, 1, 19)) AS INTEGER) / %(seconds)s)"
        return self.as_sql(compiler, connection, template=template, **extra_context)


@dataclass(frozen=True, slots=True)
class Candle:
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal


def candle_list(*, market_id: int, interval: str, limit: int, last_id: int | None = None) -> list[Candle]:
    """The last `limit` candles of `interval` up to now (those without trades left out);
    `last_id`: of the trades up to that one (the streams' snapshot, at a known position).
    At most `limit`: trades stamped by an engine whose clock runs ahead of this host's are in
    a candle this host has not reached, which came back as one more."""
    seconds = INTERVALS[interval]
    now_bucket = int(timezone.now().timestamp()) // seconds
    since = datetime.fromtimestamp((now_bucket - limit + 1) * seconds, tz=UTC)
    candles = candles_since(market_id=market_id, seconds=seconds, since=since, last_id=last_id)
    return candles[-limit:] if limit > 0 else []


def candles_since(*, market_id: int, seconds: int, since: datetime, last_id: int | None = None) -> list[Candle]:
    """The market's trades executed from `since` (up to trade `last_id`, if given) in
    candles of `seconds`, oldest first."""
    trades = Trade.objects.filter(market_id=market_id, executed_at__gte=since)
    if last_id is not None:
        trades = trades.filter(pk__lte=last_id)
    return _candles(
        trades.annotate(bucket=EpochBucket("executed_at", seconds=seconds)),
        lambda bucket: datetime.fromtimestamp(int(bucket) * seconds, tz=UTC),
    )


def trade_moments(*, market_id: int, since: datetime, until: datetime) -> list[Candle]:
    """The market's trades executed in [since, until) as one candle per moment (a batch's
    trades share theirs; `time` is that moment), oldest first: what the streams' ticker needs
    of the minute its 24-hour window begins in (orders.streams.marketdata)."""
    trades = Trade.objects.filter(market_id=market_id, executed_at__gte=since, executed_at__lt=until)
    return _candles(trades.annotate(bucket=F("executed_at")), lambda moment: moment)


def _candles(trades: QuerySet[Any], time_of: Callable[[Any], datetime]) -> list[Candle]:
    """`trades`, annotated with their `bucket`, as one candle per bucket, oldest first."""
    rows = list(
        trades.values("bucket")
        .annotate(high=Max("price"), low=Min("price"), first_id=Min("id"), last_id=Max("id"))
        .order_by("bucket")
    )
    sums = money_sums(trades, group_by="bucket", fields=["quantity", "quote_amount"])
    edge_ids = {r["first_id"] for r in rows} | {r["last_id"] for r in rows}
    prices = dict(Trade.objects.filter(pk__in=edge_ids).values_list("pk", "price"))
    return [
        Candle(
            time=time_of(r["bucket"]),
            open=prices[r["first_id"]],
            high=r["high"],
            low=r["low"],
            close=prices[r["last_id"]],
            volume=sums[r["bucket"]][0],
            quote_volume=sums[r["bucket"]][1],
        )
        for r in rows
    ]
