"""Candles and tickers for the streams, kept by the engine's announcer from each batch's
trades instead of re-read from the database after every batch: per market, the current
candle of every interval and the last 24 hourly candles, seeded once from the trades of
the last 24 hours (the engine is the only writer of its markets' trades, and their ids
grow in commit order, so a trade is applied exactly once: those up to the seed's last id
are in the seed, later ones are applied as they come). The seed is aggregated by the
database (orders.selectors.candles), a few rows per interval: read trade by trade, a
day of a busy market kept the announcer, and with it every stream message, busy for as
long as that took, holding the GIL the engine's batches need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Max
from django.utils import timezone

from core.api.fields import moment_text
from core.money import format_amount
from orders.models import Trade
from orders.selectors.candles import INTERVALS, candles_since
from orders.selectors.tickers import change_percent

HOURS = 24


@dataclass(slots=True)
class Bar:
    start: int  # epoch seconds of the bucket
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote: Decimal

    def candle(self) -> dict[str, Any]:
        """As CandleOutput writes it (written out: the engine process sends many)."""
        return {
            "time": moment_text(datetime.fromtimestamp(self.start, tz=UTC)),
            **{name: format_amount(getattr(self, name)) for name in ("open", "high", "low", "close", "volume")},
        }


class MarketData:
    def __init__(self, *, market_id: int) -> None:
        self.market_id = market_id
        self.bars: dict[str, list[Bar]] = {interval: [] for interval in INTERVALS}
        self.last_trade_id = 0
        self.last_price: Decimal | None = None
        self._seeded = False

    def _seed(self) -> None:
        last = Trade.objects.filter(market_id=self.market_id).aggregate(last=Max("id"))["last"] or 0
        since = timezone.now() - timedelta(hours=HOURS + 1)
        if last:
            for interval, seconds in INTERVALS.items():
                candles = candles_since(market_id=self.market_id, seconds=seconds, since=since, last_id=last)
                self.bars[interval] = [
                    Bar(int(c.time.timestamp()), c.open, c.high, c.low, c.close, c.volume, c.quote_volume)
                    for c in candles[-(HOURS + 1) :]
                ]
        self.last_trade_id = last
        if self.last_price is None and last:
            self.last_price = Trade.objects.filter(pk=last).values_list("price", flat=True).first()
        self._seeded = True

    def _apply(self, trade_id: int, price: Decimal, quantity: Decimal, quote: Decimal, at: datetime) -> None:
        self.last_trade_id, self.last_price = trade_id, price
        for interval, seconds in INTERVALS.items():
            start = int(at.timestamp()) // seconds * seconds
            bars = self.bars[interval]
            if bars and bars[-1].start == start:
                bar = bars[-1]
                bar.high, bar.low, bar.close = max(bar.high, price), min(bar.low, price), price
                bar.volume += quantity
                bar.quote += quote
            elif not bars or start > bars[-1].start:
                bars.append(Bar(start, price, price, price, price, quantity, quote))
                del bars[: -(HOURS + 1)]

    def trades_applied(self, trades: list[tuple[int, Decimal, Decimal, Decimal, datetime]]) -> list[tuple[str, Any]]:
        """Apply a batch's trades (id, price, quantity, notional, time); the candles they
        changed, (interval, candle)."""
        if not self._seeded:
            self._seed()
        changed: list[str] = []
        for trade in trades:
            if trade[0] > self.last_trade_id:
                self._apply(*trade)
                changed = list(INTERVALS)
        return [(interval, self.bars[interval][-1].candle()) for interval in changed]

    def ticker(self, *, symbol: str, best_bid: Decimal | None, best_ask: Decimal | None) -> dict[str, Any]:
        """As orders.streams.ticker.market_ticker: the 24 hourly candles up to this hour."""
        if not self._seeded:
            self._seed()
        hour = INTERVALS["1h"]
        first = int(timezone.now().timestamp()) // hour * hour - (HOURS - 1) * hour
        day = [bar for bar in self.bars["1h"] if bar.start >= first]
        return ticker_body(
            symbol=symbol,
            last=self.last_price,
            best_bid=best_bid,
            best_ask=best_ask,
            opening=day[0].open if day else None,
            high=max((bar.high for bar in day), default=None),
            low=min((bar.low for bar in day), default=None),
            volume=sum((bar.volume for bar in day), Decimal(0)),
            quote_volume=sum((bar.quote for bar in day), Decimal(0)),
        )


def ticker_body(
    *,
    symbol: str,
    last: Decimal | None,
    best_bid: Decimal | None,
    best_ask: Decimal | None,
    opening: Decimal | None,
    high: Decimal | None,
    low: Decimal | None,
    volume: Decimal,
    quote_volume: Decimal,
) -> dict[str, Any]:
    change = change_percent(last=last, opening=opening)
    return {
        "symbol": symbol,
        "last_price": format_amount(last),
        "best_bid": format_amount(best_bid),
        "best_ask": format_amount(best_ask),
        "open_24h": format_amount(opening),
        "high_24h": format_amount(high),
        "low_24h": format_amount(low),
        "volume_24h": format_amount(volume),
        "quote_volume_24h": format_amount(quote_volume),
        "change_24h_percent": None if change is None else f"{change}",
    }
