"""The streams' candles and ticker kept in memory (orders.streams.marketdata): the seed,
aggregated by the database, holds what applying the same trades one by one holds, to the
last unit of amounts past floating point's 15 digits, on both backends."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from orders.models import Trade
from orders.selectors.candles import INTERVALS
from orders.streams.marketdata import HOURS, MarketData, ticker_body
from orders.streams.ticker import market_ticker_at
from tests.factories import UserFactory, fund, market_create
from tests.orders.support import place

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(db):
    return market_create("ETH-USDT")


def _history(market, rng: random.Random, *, count: int) -> None:
    """`count` trades over the last 26 hours, ids growing with time as the engine writes
    them; quantities up to 1e13 with 8 decimals (22 digits: past a float's 15)."""
    now = timezone.now()
    moments = sorted(now - timedelta(seconds=rng.randrange(26 * 3600)) for _ in range(count))
    rows = [
        (moment, Decimal(rng.randrange(150_000, 250_000)) / 100, Decimal(rng.randrange(1, 10**21)) / 10**8)
        for moment in moments
    ]
    _trades(market, rows, now=now)


def _trades(market, rows: list[tuple[datetime, Decimal, Decimal]], *, now: datetime) -> None:
    """Trades at (moment, price, quantity), in that order (ids grow with time as the engine
    writes them), copied from one placed for their orders and users."""
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "1")
    fund(buyer, "USDT", "10000")
    place(seller, side="sell", type="limit", quantity="0.1", price="2000.00")
    place(buyer, side="buy", type="limit", quantity="0.1", price="2000.00", time_in_force="IOC")
    template = Trade.objects.get()
    copies = [
        Trade(
            market_id=market.pk,
            price=price,
            quantity=quantity,
            quote_amount=(price * quantity).quantize(Decimal("0.00000001")),
            taker_side=template.taker_side,
            taker_order_id=template.taker_order_id,
            maker_order_id=template.maker_order_id,
            taker_user_id=template.taker_user_id,
            maker_user_id=template.maker_user_id,
            taker_fee=Decimal(0),
            maker_fee=Decimal(0),
            reference_price=price,
            executed_at=moment,
        )
        for moment, price, quantity in rows
    ]
    # The trade placed for its orders and users: older than the day the seed reads.
    Trade.objects.filter(pk=template.pk).update(executed_at=now - timedelta(hours=HOURS + 3))
    Trade.objects.bulk_create(copies)


def _one_by_one(market_id: int) -> MarketData:
    """The same trades applied as the announcer applies a batch's, without a seed."""
    data = MarketData(market_id=market_id)
    data._seeded = True
    since = timezone.now() - timedelta(hours=HOURS + 1)
    rows = (
        Trade.objects.filter(market_id=market_id, executed_at__gte=since)
        .order_by("id")
        .values_list("id", "price", "quantity", "quote_amount", "executed_at")
    )
    data.trades_applied(list(rows))
    return data


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_seed_holds_what_the_trades_applied_one_by_one_hold(market, seed):
    _history(market, random.Random(seed), count=120)
    seeded = MarketData(market_id=market.pk)
    assert seeded.trades_applied([]) == []  # the seed, and nothing new to apply
    applied = _one_by_one(market.pk)
    for interval in INTERVALS:
        assert seeded.bars[interval], interval
        assert seeded.bars[interval] == applied.bars[interval], interval
    assert (seeded.last_trade_id, seeded.last_price) == (applied.last_trade_id, applied.last_price)
    assert seeded.ticker(symbol="ETH-USDT", best_bid=None, best_ask=None) == applied.ticker(
        symbol="ETH-USDT", best_bid=None, best_ask=None
    )
    # Past a float's 15 significant digits, where SQLite's SUM would have rounded.
    assert any(len(bar.volume.as_tuple().digits) > 15 for bar in seeded.bars["1h"])


def test_the_ticker_snapshot_volumes_are_exact_past_fifteen_significant_digits(market):
    """A `ticker:` subscription's snapshot (orders.streams.ticker) sums the day's trades as
    the seed does, to the last unit: not with SQLite's floating-point SUM."""
    _history(market, random.Random(4), count=60)
    held = MarketData(market_id=market.pk)
    held.trades_applied([])
    expected = held.ticker(symbol="ETH-USDT", best_bid=None, best_ask=None)

    (snapshot, _) = market_ticker_at(market_id=market.pk, symbol="ETH-USDT")

    assert len(Decimal(expected["quote_volume_24h"]).as_tuple().digits) > 15
    assert (snapshot["volume_24h"], snapshot["quote_volume_24h"]) == (
        expected["volume_24h"],
        expected["quote_volume_24h"],
    )


FIGURES = ("open_24h", "high_24h", "low_24h", "volume_24h", "quote_volume_24h", "change_24h_percent", "last_price")


def test_the_streams_ticker_counts_the_trades_the_rest_ticker_counts(market, api_client):
    """The ticker stream's update (kept by the engine) and snapshot count the trades
    GET .../ticker counts: those of the last 24 hours, to the moment. The stream counted the
    24 hourly candles up to this hour: at 10:30 it left out a trade of 10:40 yesterday, which
    REST counted (another open, volume and change)."""
    now = timezone.now().replace(minute=10, second=30, microsecond=0) - timedelta(hours=1)
    start = now - timedelta(hours=24)  # the window's first moment, mid-minute
    rows = [
        (start - timedelta(minutes=5), Decimal("1000.00"), Decimal("1")),  # before the window
        (start - timedelta(seconds=10), Decimal("1100.00"), Decimal("2")),  # its first minute, before it
        (start + timedelta(seconds=10), Decimal("1200.00"), Decimal("3")),  # its first minute, in it
        (start + timedelta(seconds=10), Decimal("1250.00"), Decimal("0.5")),  # same moment (one batch)
        (start + timedelta(seconds=40), Decimal("1300.00"), Decimal("4")),  # the next minute
        (start + timedelta(minutes=20), Decimal("900.00"), Decimal("5")),  # its first hour, past 11:00
        (start + timedelta(hours=3), Decimal("1400.00"), Decimal("6")),
        (now - timedelta(minutes=1), Decimal("1500.00"), Decimal("7")),
    ]
    _trades(market, rows, now=now)
    market.last_price = Decimal("1500.00")
    market.save(update_fields=["last_price"])
    data = MarketData(market_id=market.pk)
    # The window's first trade, or the start of its minute when the bars tell no more (20 s
    # later the first is the trade at minute 11 and 10 s of its hour: minute 11, no later).
    first_in_window = (start + timedelta(seconds=10), start + timedelta(seconds=30))
    for moment, volume, first in zip(
        (now, now + timedelta(seconds=20)), ("25.50000000", "22.00000000"), first_in_window, strict=True
    ):
        # 20 s later the trades 10 s into the window have left it: their minute is read by moment.
        with mock.patch("django.utils.timezone.now", return_value=moment):
            rest = api_client.get(f"/api/markets/{market.symbol}/ticker").json()
            update = data.ticker(symbol=market.symbol, best_bid=None, best_ask=None)
            (snapshot, _) = market_ticker_at(market_id=market.pk, symbol=market.symbol)
        assert rest["volume_24h"] == volume
        assert {name: update[name] for name in FIGURES} == {name: rest[name] for name in FIGURES}
        assert snapshot == rest
        assert data.window_first == first  # it leaves the window a day later: a quiet market's refresh


def test_trades_after_the_seed_are_applied_once(market):
    _history(market, random.Random(9), count=30)
    data = MarketData(market_id=market.pk)
    data.trades_applied([])
    last = Trade.objects.order_by("-id").values_list("id", "price", "quantity", "quote_amount", "executed_at")[0]
    volume = data.bars["1d"][-1].volume
    assert data.trades_applied([last]) == []  # in the seed already: not counted twice
    assert data.bars["1d"][-1].volume == volume
    later = (last[0] + 1, Decimal("2100.00"), Decimal("0.5"), Decimal("1050.00"), timezone.now())
    changed = dict(data.trades_applied([later]))
    assert set(changed) == set(INTERVALS)
    assert changed["1m"]["close"] == "2100.00000000"
    assert data.last_price == Decimal("2100.00")


def test_a_market_without_trades_seeds_nothing(market):
    data = MarketData(market_id=market.pk)
    assert data.trades_applied([]) == []
    assert all(bars == [] for bars in data.bars.values())
    assert (data.last_trade_id, data.last_price) == (0, None)


@pytest.mark.parametrize(
    ("last", "opening", "change"),
    [
        ("1499.99", "1500.00", "0.00"),
        ("1500.01", "1500.00", "0.00"),
        ("1485.00", "1500.00", "-1.00"),
        (None, "1.00", None),
    ],
)
def test_the_streams_ticker_change_is_the_apis(last, opening, change):
    # Rounded as the REST ticker rounds it (one rule, orders.selectors.tickers.change_percent):
    # a fall too small to show was "-0.00".
    body = ticker_body(
        symbol="ETH-USDT",
        last=None if last is None else Decimal(last),
        best_bid=None,
        best_ask=None,
        opening=Decimal(opening),
        high=None,
        low=None,
        volume=Decimal(0),
        quote_volume=Decimal(0),
    )
    assert body["change_24h_percent"] == change
