"""The engine's clock when its host's wall clock steps back (an NTP correction, a VM resumed
from a pause, a host set right after running minutes ahead): a batch's moment (orders'
created_at, events' `at`, trades' executed_at) never goes back behind a moment the
sequencer already wrote, nor behind the last trade of a market it takes over: a trade's id
and its time then sort alike, and the candles never put a later trade in an earlier, closed
minute (orders.sequencer.loop.EngineClock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from orders.models import Order, OrderEvent, Trade
from orders.selectors.candles import candles_since
from orders.sequencer.commands import place_command
from orders.sequencer.loop import EngineClock, Sequencer
from orders.sequencer.standby import WarmStandby
from orders.streams.marketdata import MarketData
from tests.factories import UserFactory, fund
from tests.orders.invariants import assert_invariants

pytestmark = pytest.mark.django_db(transaction=True)


class _WallClock:
    """The host's wall clock, set by the test (django.utils.timezone.now reads it)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _place(user: Any, **fields: str) -> dict[str, Any]:
    return place_command(user_id=user.pk, fields={"market": "ETH-USDT", "type": "limit", **fields})


def _minute_start() -> datetime:
    now = datetime.now(UTC)
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _trade_pair(sequencer: Sequencer, *, price: str) -> None:
    seller, buyer = UserFactory(), UserFactory()
    fund(seller, "ETH", "1")
    fund(buyer, "USDT", "5000")
    answers = sequencer.run_batch(
        [
            _place(seller, side="sell", quantity="0.1000", price=price),
            _place(buyer, side="buy", quantity="0.1000", price=price),
        ]
    )
    assert [answer["status"] for answer in answers] == [201, 201]


def test_a_wall_clock_stepping_back_never_moves_the_engine_s_moments_back(market, monkeypatch):
    minute = _minute_start()
    wall = _WallClock(minute + timedelta(seconds=0.2))  # 0.2 s into a minute
    monkeypatch.setattr(timezone, "now", wall)
    sequencer = Sequencer()
    sequencer.load()
    _trade_pair(sequencer, price="2000.00")
    wall.at -= timedelta(seconds=1)  # stepped back 1 s: 0.8 s before that minute began
    _trade_pair(sequencer, price="2001.00")

    trades = list(Trade.objects.order_by("id").values_list("price", "executed_at"))
    assert [str(price) for price, _ in trades] == ["2000.00000000", "2001.00000000"]
    assert trades[1][1] > trades[0][1]  # the later trade is later than the earlier one
    orders = list(Order.objects.order_by("id").values_list("created_at", flat=True))
    assert orders == sorted(orders)
    for order in Order.objects.all():
        moments = list(OrderEvent.objects.filter(order=order).order_by("id").values_list("at", flat=True))
        assert moments == sorted(moments)

    # Both trades in the minute of the first; none in the minute before, already closed.
    candles = candles_since(market_id=market.pk, seconds=60, since=minute - timedelta(minutes=5))
    assert [(c.time, str(c.open), str(c.close)) for c in candles] == [(minute, "2000.00000000", "2001.00000000")]
    assert_invariants()


def test_the_streams_candles_follow_the_last_trade_after_the_wall_clock_stepped_back(market, monkeypatch):
    minute = _minute_start()
    wall = _WallClock(minute + timedelta(seconds=0.2))
    monkeypatch.setattr(timezone, "now", wall)
    sequencer = Sequencer()
    sequencer.load()
    data = MarketData(market_id=market.pk)
    data.trades_applied([])  # seeded before the trades, as the engine's announcer is
    _trade_pair(sequencer, price="2000.00")
    wall.at -= timedelta(seconds=1)
    _trade_pair(sequencer, price="2001.00")
    rows = Trade.objects.order_by("id").values_list("id", "price", "quantity", "quote_amount", "executed_at")
    changed = data.trades_applied([tuple(row) for row in rows])  # type: ignore[misc]
    closes = {interval: candle["close"] for interval, candle in changed}
    assert closes["1m"] == "2001.00000000"  # the last trade's price, as the ticker's last price
    assert str(data.last_price) == "2001.00000000"


def test_a_new_leader_whose_clock_is_behind_never_writes_trades_older_than_the_market_s_last(market, monkeypatch):
    minute = _minute_start()
    wall = _WallClock(minute + timedelta(seconds=30))
    monkeypatch.setattr(timezone, "now", wall)
    before = Sequencer()
    before.load()
    _trade_pair(before, price="2000.00")
    # Another engine takes the market over; its host's clock runs 45 s behind.
    wall.at -= timedelta(seconds=45)
    after = Sequencer()
    after.load()
    _trade_pair(after, price="2001.00")
    moments = list(Trade.objects.order_by("id").values_list("executed_at", flat=True))
    assert moments[1] > moments[0]
    assert_invariants()


def test_a_standby_taking_over_never_writes_trades_older_than_those_the_leader_wrote_meanwhile(market, monkeypatch):
    minute = _minute_start()
    wall = _WallClock(minute + timedelta(seconds=30))
    monkeypatch.setattr(timezone, "now", wall)
    standby = WarmStandby(Sequencer())
    standby.load()  # before the leader's trade: its markets installed, nothing to seed yet
    leader = Sequencer()
    leader.load()
    _trade_pair(leader, price="2000.00")
    wall.at -= timedelta(seconds=45)  # the standby's host runs 45 s behind the leader's
    standby.catch_up()
    standby.sequencer.clock_seed()  # as the engine server does on taking over
    _trade_pair(standby.sequencer, price="2001.00")
    moments = list(Trade.objects.order_by("id").values_list("executed_at", flat=True))
    assert moments[1] > moments[0]
    assert_invariants()


def test_while_the_wall_clock_is_behind_each_batch_is_a_microsecond_after_the_one_before():
    wall = _WallClock(datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC))
    clock = EngineClock(wall)
    first = clock.now()
    wall.at -= timedelta(minutes=5)  # stepped back
    moments = [clock.now() for _ in range(3)]
    assert moments == [first + timedelta(microseconds=n) for n in (1, 2, 3)]
    wall.at += timedelta(minutes=6)  # past the engine's moment again: the wall clock's
    assert clock.now() == wall.at
