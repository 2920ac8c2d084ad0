"""Broker outage: the Redis of the platform (a private redis-server holding both the
Celery broker and the cache, as bench.infra.django_env and a single-Redis deployment have
it) stops while traders keep trading through gunicorn, and comes back empty. Orders keep
succeeding (the order throttle fails open without its cache; publishing falls back to the
outbox); afterwards the worker and the post-trade sweep (the task django-celery-beat runs)
turn every trade's fees into exactly one revenue event - nothing lost, nothing doubled."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from tests.reliability.harness import (
    Figures,
    Platform,
    RetryPolicy,
    Rig,
    Trader,
    assert_platform_sound,
    log,
    traders_join,
    traffic_figures,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

TRADERS = 6
BEFORE_S, OUTAGE_S, AFTER_S = 5.0, 8.0, 11.0
SWEEP_AGE_S = 2  # POST_TRADE_SWEEP_AGE_SECONDS for this run (20 in production): the sweep's delay only
BROKER_RETRY_AFTER_S = 5  # the publisher's circuit breaker (BROKER_RETRY_AFTER_SECONDS default)
# Trades this long after the broker is back are published again (breaker closed, with a margin).
RESUMED_AFTER = timedelta(seconds=BROKER_RETRY_AFTER_S + 3)
# Crossing flow: market orders (book or house) and crossing limits, so trades happen every second.
MIX = {"limit_gtc": 35, "limit_ioc": 15, "limit_fok": 10, "market_ioc": 30, "market_fok": 10}


def _db_now(platform: Platform) -> datetime:
    """The database's clock: trades are stamped with it (same machine, one clock)."""
    now = platform.query("SELECT clock_timestamp()")[0][0]
    assert isinstance(now, datetime)
    return now


@pytest.mark.timeout(300)
def test_broker_outage_loses_no_fee_and_doubles_none(rig: Rig, figures: Figures) -> None:
    broker = rig.redis()  # broker on db 0, cache on db 1: both go down together
    # One post-trade task per batch with its jobs: the outage's jobs then come back through
    # the sweep only, the path this test is about. (With the default window, the first task
    # after the broker is back also takes every job not tried yet: tests/revenue/
    # test_post_trade_jobs.py.)
    platform = rig.platform(
        redis_url=broker.url,
        seed={"traders": TRADERS},
        POST_TRADE_SWEEP_AGE_SECONDS=str(SWEEP_AGE_S),
        POST_TRADE_PUBLISH_WINDOW_SECONDS="0",
    )
    server = rig.web(platform)
    rig.worker(platform, queues="celery")  # one worker, as in production (beat's sweep: published below)
    publisher = rig.publisher(platform)

    stop = threading.Event()
    began = time.monotonic()
    traders = [
        Trader(
            i,
            port=server.port,
            token=platform.seed["traders"][i]["token"],
            seed=11,
            placements=None,
            stop=stop,
            deadline=began + 120,
            timeout=20,
            retry=RetryPolicy(),
            pause=0.05,
            mix=MIX,
        )
        for i in range(TRADERS)
    ]
    for trader in traders:
        trader.start()

    def trades_since(moment: datetime) -> int:
        return int(platform.query("SELECT count(*) FROM orders_trade WHERE executed_at >= %s", [moment])[0][0])

    try:
        # Each phase lasts at least its time and until trades happened in it, however slow
        # the machine is.
        time.sleep(BEFORE_S)
        down_at = _db_now(platform)
        broker.stop()
        log(f"broker stopped; trading on for at least {OUTAGE_S:g} s")
        time.sleep(OUTAGE_S)
        wait_until(lambda: trades_since(down_at) > 0, timeout=60, what="a trade while the broker is down")
        broker.start()  # same port, empty: whatever was queued is gone
        up_at = _db_now(platform)
        log("broker back (empty)")
        time.sleep(AFTER_S)
        wait_until(lambda: trades_since(up_at + RESUMED_AFTER) > 0, timeout=60, what="trades once the broker is back")
    finally:
        stop.set()
        traders_join(traders, timeout=60)
    ended_at = _db_now(platform)
    load_s = time.monotonic() - began

    attempts = [a for t in traders for a in t.attempts]
    placements = [p for t in traders for p in t.placements]
    figures.update(
        traffic_figures(traders),
        traders=TRADERS,
        load_s=round(load_s, 1),
        outage_s=OUTAGE_S,
        faults_injected={"redis_stops": 1, "redis_restarts_empty": 1},
    )
    # Orders kept succeeding while the broker was down.
    assert all(p.acknowledged for p in placements), [
        (p.client_order_id, p.answer.status if p.answer else None, p.answer.body if p.answer else None)
        for p in placements
        if not p.acknowledged
    ][:5]
    assert not [a for a in attempts if a.status >= 500 or a.status == 0]
    cancel_statuses = Counter(answer.status for t in traders for _, answer in t.cancels)
    assert set(cancel_statuses) <= {200, 409}, cancel_statuses

    ((trades_down, trades_after, trades_late),) = platform.query(
        """SELECT count(*) FILTER (WHERE executed_at >= %(down)s AND executed_at < %(up)s),
                  count(*) FILTER (WHERE executed_at >= %(up)s),
                  count(*) FILTER (WHERE executed_at >= %(late)s)
           FROM orders_trade""",
        {"down": down_at, "up": up_at, "late": up_at + RESUMED_AFTER},
    )
    assert trades_down > 0, "no trade happened while the broker was down"
    assert trades_late > 0

    # The worker processes what was published after the broker came back ...
    late_pending = (
        "SELECT count(*) FROM orders_tradeoutbox j JOIN orders_trade t ON t.id = j.trade_id "
        "WHERE j.status = 'pending' AND t.executed_at >= %s"
    )
    wait_until(
        lambda: platform.query(late_pending, [up_at + RESUMED_AFTER])[0][0] == 0,
        timeout=30,
        interval=0.5,
        what="the worker to process the jobs published once the broker was back",
    )
    ((left_to_sweep,),) = platform.query("SELECT count(*) FROM orders_tradeoutbox WHERE status = 'pending'")
    # ... and the trades of the outage were never published: only the outbox has them.
    assert left_to_sweep > 0
    log(f"{left_to_sweep} post-trade jobs were never published; running the sweep")

    sweeps = 0

    def swept() -> bool:
        nonlocal sweeps
        if platform.query("SELECT count(*) FROM orders_tradeoutbox WHERE status = 'pending'")[0][0] == 0:
            return True
        publisher.send("revenue.tasks.post_trade_jobs_sweep")  # what beat publishes every 30 s
        sweeps += 1
        return False

    wait_until(swept, timeout=90, interval=SWEEP_AGE_S + 1, what="the sweep to process every pending job")

    # Every trade with fees: exactly one Trading Fees event with the trade's fees.
    expected = dict(
        platform.query("SELECT id::text, taker_fee + maker_fee FROM orders_trade WHERE taker_fee + maker_fee > 0")
    )
    recorded = platform.query(
        "SELECT source_id, gross_amount, metadata->>'tradeId' FROM revenue_revenueevent WHERE source_type = 'trade'"
    )
    assert len(recorded) == len({source for source, _, _ in recorded})
    assert {source: Decimal(gross) for source, gross, _ in recorded} == expected
    assert all(trade_id == source for source, _, trade_id in recorded)
    # House fills: one Market Making event per fill with a spread, the spread as its amount.
    expected_spread = dict(
        platform.query(
            """SELECT id::text, floor(abs(price - reference_price) * quantity * 1e8) / 1e8 FROM orders_trade
               WHERE is_house AND floor(abs(price - reference_price) * quantity * 1e8) > 0"""
        )
    )
    spreads = dict(
        platform.query("SELECT source_id, gross_amount FROM revenue_revenueevent WHERE source_type = 'house_fill'")
    )
    assert spreads == expected_spread
    duplicates = platform.query(
        "SELECT source_type, source_id FROM revenue_revenueevent GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert duplicates == []
    # Stream totals move with their events only.
    totals = dict(platform.query("SELECT id, collected FROM revenue_revenuestream WHERE id IN (0, 4)"))
    assert totals[0] == sum(expected.values(), Decimal(0))
    assert totals[4] == sum(expected_spread.values(), Decimal(0))
    ((jobs, done),) = platform.query("SELECT count(*), count(*) FILTER (WHERE status = 'done') FROM orders_tradeoutbox")

    counts = assert_platform_sound(figures, platform, port=server.port, staff_token=platform.seed["staff_token"])
    figures.update(
        trades_during_outage=trades_down,
        trades_after_restart=trades_after,
        post_trade_jobs=jobs,
        jobs_left_to_sweep=left_to_sweep,
        sweep_tasks_published=sweeps,
        trading_fee_events=len(recorded),
        trading_fees_total=str(totals[0]),
        house_spread_events=len(spreads),
        events_checked=len(recorded) + len(spreads),
        window=[str(down_at), str(up_at), str(ended_at)],
    )
    assert jobs == done == counts["trades"]
    figures.passed()
