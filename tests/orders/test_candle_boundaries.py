"""Candles and the 24-hour ticker at their edges, alike on both backends and in the streams:
a trade in the last microsecond of a minute (hour, day) is in that candle, one at exactly
00:00:00.000000 UTC in the next; a trade exactly 24 hours old is still in the ticker's window,
a microsecond later it is out (REST and streams alike)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from orders.models import Market, Trade
from orders.selectors.candles import INTERVALS, candle_list, candles_since
from orders.selectors.tickers import ticker_list
from orders.sequencer.commands import place_command
from orders.sequencer.loop import Sequencer
from orders.streams.marketdata import MarketData
from tests.factories import UserFactory, fund

pytestmark = pytest.mark.django_db(transaction=True)

MIDNIGHT = datetime(2026, 12, 7, tzinfo=UTC)


class _WallClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _trade(sequencer: Sequencer, *, price: str) -> None:
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "1")
    fund(buyer, "USDT", "5000")
    fields: dict[str, Any] = {"market": "ETH-USDT", "type": "limit", "quantity": "0.1000", "price": price}
    answers = sequencer.run_batch(
        [
            place_command(user_id=seller.pk, fields={**fields, "side": "sell"}),
            place_command(user_id=buyer.pk, fields={**fields, "side": "buy"}),
        ]
    )
    assert [answer["status"] for answer in answers] == [201, 201]


@pytest.fixture
def edge_trades(market, monkeypatch) -> tuple[_WallClock, MarketData]:
    """A trade at 23:59:59.999999 (2000.00), one at 00:00:00.000000 (2001.00), the streams'
    market data seeded before them and fed them as the engine's announcer would."""
    wall = _WallClock(MIDNIGHT - timedelta(microseconds=1))
    monkeypatch.setattr(timezone, "now", wall)
    sequencer = Sequencer()
    sequencer.load()
    data = MarketData(market_id=market.pk)
    data.trades_applied([])
    _trade(sequencer, price="2000.00")
    wall.at = MIDNIGHT
    _trade(sequencer, price="2001.00")
    rows = Trade.objects.order_by("id").values_list("id", "price", "quantity", "quote_amount", "executed_at")
    data.trades_applied([tuple(row) for row in rows])  # type: ignore[misc]
    return wall, data


@pytest.mark.parametrize("interval", list(INTERVALS))
def test_a_trade_in_the_last_microsecond_of_a_candle_stays_in_it(market, edge_trades, interval):
    # On SQLite the bucket was read from the text with strftime('%s'), which rounds to the
    # millisecond first: 23:59:59.999999 fell into the next minute, hour and day.
    _, data = edge_trades
    seconds = INTERVALS[interval]
    candles = candles_since(market_id=market.pk, seconds=seconds, since=MIDNIGHT - timedelta(days=2))
    rest = [(c.time, c.close) for c in candles]
    assert rest == [(MIDNIGHT - timedelta(seconds=seconds), Decimal("2000")), (MIDNIGHT, Decimal("2001"))]
    streams = [(datetime.fromtimestamp(bar.start, tz=UTC), bar.close) for bar in data.bars[interval]]
    assert streams == rest


def test_a_trade_exactly_24_hours_old_is_in_the_ticker_until_a_microsecond_later(market, edge_trades):
    wall, data = edge_trades
    for later, volume in ((timedelta(0), "0.1"), (timedelta(microseconds=1), "0")):
        wall.at = MIDNIGHT + timedelta(hours=24) + later
        (rest,) = ticker_list(markets=[Market.objects.get(pk=market.pk)])
        streams = data.ticker(symbol="ETH-USDT", best_bid=None, best_ask=None)
        assert rest.volume_24h == Decimal(streams["volume_24h"]) == Decimal(volume), later
        assert rest.open_24h == (None if streams["open_24h"] is None else Decimal(streams["open_24h"]))


def test_candles_stamped_ahead_of_this_host_s_clock_never_exceed_the_limit(market, monkeypatch):
    # The engine's host runs a minute ahead of the web host's: its trades are in a minute
    # this host has not reached. `limit` candles up to the current one came back limit + 1.
    wall = _WallClock(MIDNIGHT + timedelta(seconds=30))
    monkeypatch.setattr(timezone, "now", wall)
    sequencer = Sequencer()
    sequencer.load()
    _trade(sequencer, price="2000.00")  # 00:00:30
    wall.at += timedelta(minutes=1)
    _trade(sequencer, price="2001.00")  # 00:01:30, by the engine's clock
    wall.at -= timedelta(minutes=1)  # the web host's clock, a minute behind
    candles = candle_list(market_id=market.pk, interval="1m", limit=1)
    assert [(c.time, c.close) for c in candles] == [(MIDNIGHT + timedelta(minutes=1), Decimal("2001"))]
    assert len(candle_list(market_id=market.pk, interval="1m", limit=2)) == 2
