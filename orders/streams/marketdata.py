"""Candles and tickers for the streams, kept by the engine's announcer from each batch's
trades instead of re-read from the database after every batch: per market, the current
candle of every interval, the last 25 hourly candles and 25 hours of minute candles (the
ticker's window, as the REST ticker's: below), seeded once from the trades of the last 25
hours (the engine is the only writer of its markets' trades, and their ids
grow in commit order, so a trade is applied exactly once: those up to the seed's last id
are in the seed, later ones are applied as they come). The seed is aggregated by the
database (orders.selectors.candles), a few rows per interval: read trade by trade, a
day of a busy market kept the announcer, and with it every stream message, busy for as
long as that took, holding the GIL the engine's batches need."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from core.api.fields import moment_text
from core.money import exact_arithmetic, format_amount
from orders.models import Trade
from orders.selectors.candles import INTERVALS, candles_since, trade_moments
from orders.selectors.tickers import TICKER_WINDOW, change_percent, trade_last_id

HOURS = 24
# Bars kept per interval: HOURS + 1 (the current candle, and the hours the ticker sums), and
# the minutes of the last HOURS + 1 hours (the ticker's first hour is summed by its minutes).
KEPT = {"1m": (HOURS + 1) * 60}


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
        # The window's first minute (epoch seconds), its trades' moments and the totals of
        # each moment and the later ones (MarketData.ticker).
        self._tail_minute = -1
        self._tail_times: list[datetime] = []
        self._tail_totals: list[Bar] = []
        # The moment the last ticker's first trade was made, or the start of its minute or
        # hour when that is all the bars tell (no later than it): it leaves the window a day
        # after (the consumers refresh a quiet market's ticker then).
        self.window_first: datetime | None = None

    def _seed(self) -> None:
        last = trade_last_id(market_id=self.market_id)
        since = timezone.now() - timedelta(hours=HOURS + 1)
        if last:
            for interval, seconds in INTERVALS.items():
                candles = candles_since(market_id=self.market_id, seconds=seconds, since=since, last_id=last)
                self.bars[interval] = [
                    Bar(int(c.time.timestamp()), c.open, c.high, c.low, c.close, c.volume, c.quote_volume)
                    for c in candles[-KEPT.get(interval, HOURS + 1) :]
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
                del bars[: -KEPT.get(interval, HOURS + 1)]

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
        """The REST ticker's figures (orders.selectors.tickers.ticker_list: the trades executed
        from TICKER_WINDOW ago, to the microsecond), from the bars kept: the hours after the one
        the window begins in, that hour's minutes after the one it begins in, and that minute's
        trades from the window's start on (read from the database once per minute: a day old,
        they no longer change). It counted the 24 hourly candles up to this hour, 23 to 24
        hours: a bot saw another volume and change than GET .../ticker's."""
        if not self._seeded:
            self._seed()
        start = timezone.now() - TICKER_WINDOW
        minute, hour = INTERVALS["1m"], INTERVALS["1h"]
        first_minute = int(start.timestamp()) // minute * minute
        first_hour = first_minute // hour * hour
        day: list[Bar] = []
        tail = self._window_tail(first_minute, start)
        if tail is not None:
            day.append(tail)
            self.window_first = self._tail_times[bisect_left(self._tail_times, start)]
        for bar in self.bars["1m"]:  # oldest first: the window's first hour is near the start
            if bar.start >= first_hour + hour:
                break
            if bar.start > first_minute:
                day.append(bar)
        day += [bar for bar in self.bars["1h"] if bar.start > first_hour]
        if tail is None:
            self.window_first = datetime.fromtimestamp(day[0].start, tz=UTC) if day else None
        with exact_arithmetic():
            volume = sum((bar.volume for bar in day), Decimal(0))
            quote_volume = sum((bar.quote for bar in day), Decimal(0))
        return ticker_body(
            symbol=symbol,
            last=self.last_price,
            best_bid=best_bid,
            best_ask=best_ask,
            opening=day[0].open if day else None,
            high=max((bar.high for bar in day), default=None),
            low=min((bar.low for bar in day), default=None),
            volume=volume,
            quote_volume=quote_volume,
        )

    def _window_tail(self, first_minute: int, start: datetime) -> Bar | None:
        """The trades of the window's first minute executed from `start` on, as one bar. The
        minute's trades are read once, by moment (a batch's trades share theirs), with the
        totals of each moment and all the later ones of the minute."""
        if self._tail_minute != first_minute:
            since = datetime.fromtimestamp(first_minute, tz=UTC)
            moments = trade_moments(
                market_id=self.market_id, since=since, until=since + timedelta(seconds=INTERVALS["1m"])
            )
            totals: list[Bar] = []
            with exact_arithmetic():
                for moment in reversed(moments):
                    later = totals[-1] if totals else None
                    totals.append(
                        Bar(
                            first_minute,
                            moment.open,
                            moment.high if later is None else max(moment.high, later.high),
                            moment.low if later is None else min(moment.low, later.low),
                            moment.close if later is None else later.close,
                            moment.volume + (later.volume if later else 0),
                            moment.quote_volume + (later.quote if later else 0),
                        )
                    )
            self._tail_minute = first_minute
            self._tail_times = [moment.time for moment in moments]
            self._tail_totals = totals[::-1]
        index = bisect_left(self._tail_times, start)
        return self._tail_totals[index] if index < len(self._tail_totals) else None


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
