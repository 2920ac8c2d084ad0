from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db.models import Sum

from orders.engine.requests import OrderRequest
from orders.models import Trade, TradeOutbox
from orders.sequencer.transport import in_process_engine_reset
from orders.services.orders import order_place
from revenue import dispatch
from revenue.models import RevenueEvent, RevenueStream
from revenue.services import post_trade_job_process, post_trade_jobs_catch_up, post_trade_jobs_process
from revenue.tasks import post_trade_jobs_run, post_trade_jobs_sweep
from tests.factories import fund

pytestmark = pytest.mark.django_db


def _cross(maker, taker, *, quantity="1", price="2000.00"):
    fund(maker, "ETH", quantity)
    fund(taker, "USDT", "100000")
    order_place(
        user=maker, request=OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity=quantity, price=price)
    )
    order_place(user=taker, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity=quantity))
    return Trade.objects.order_by("-id").first()


def test_trade_writes_its_job_in_the_same_transaction(eth_market, user, other_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        trade = _cross(user, other_user)
    # The job exists before any callback ran: it was written with the trade.
    assert TradeOutbox.objects.get(trade=trade).status == "pending"
    assert callbacks, "the task is published only on commit"


def test_task_on_commit_turns_each_trade_into_one_trading_fee_event(
    eth_market, user, other_user, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        trade = _cross(user, other_user, quantity="0.5", price="2000.00")
    event = RevenueEvent.objects.get(source_type="trade", source_id=str(trade.pk))
    assert event.stream_id == 0
    assert event.gross_amount == trade.taker_fee + trade.maker_fee
    assert trade.taker_fee == Decimal("1.2") and trade.maker_fee == Decimal("0.8")  # 12 and 8 bps of 1000
    assert TradeOutbox.objects.get(trade=trade).status == "done"
    assert not RevenueEvent.objects.filter(source_type="house_fill").exists()


def test_house_fill_also_yields_a_market_making_event(eth_market, user):
    fund(user, "USDT", "5000")
    order_place(user=user, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="0.1"))
    trade = Trade.objects.get(is_house=True)
    assert trade.price == Decimal("2010.00")  # reference 2000 + 0.5%
    post_trade_jobs_process(job_ids=[trade.outbox.pk])
    spread = RevenueEvent.objects.get(source_type="house_fill", source_id=str(trade.pk))
    assert spread.stream_id == 4
    assert spread.gross_amount == abs(trade.price - trade.reference_price) * trade.quantity == Decimal("1.0")
    fees = RevenueEvent.objects.get(source_type="trade", source_id=str(trade.pk))
    assert fees.gross_amount == trade.taker_fee  # the house pays no maker fee


def test_trades_without_fees_record_no_trading_fee_event(eth_market, user, other_user, settings):
    """Fees of 0 bps (core.checks allows them): the trades settle with fees of 0 and their
    jobs are done without a Trading Fees event (the collector refuses a gross of 0: the
    job would fail at every retry); a house fill's spread is still revenue."""
    settings.TAKER_FEE_BPS, settings.MAKER_FEE_BPS = 0, 0
    in_process_engine_reset()
    booked = _cross(user, other_user)
    order_place(user=other_user, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="0.1"))
    house = Trade.objects.get(is_house=True)
    assert [(t.taker_fee, t.maker_fee) for t in (booked, house)] == [(0, 0), (0, 0)]
    assert post_trade_jobs_process(job_ids=[booked.outbox.pk, house.outbox.pk]) == 2
    assert set(TradeOutbox.objects.values_list("status", flat=True)) == {"done"}
    assert not RevenueEvent.objects.filter(source_type="trade").exists()
    spread = RevenueEvent.objects.get(source_type="house_fill", source_id=str(house.pk))
    assert spread.gross_amount == Decimal("1.0")  # 0.1 x (2010 - 2000)


def test_replaying_a_job_or_a_task_never_duplicates(eth_market, user, other_user):
    trade = _cross(user, other_user)
    job = trade.outbox
    assert post_trade_job_process(job_id=job.pk) is True
    assert post_trade_job_process(job_id=job.pk) is False
    assert post_trade_jobs_process(job_ids=[job.pk, job.pk]) == 0
    assert RevenueEvent.objects.filter(source_id=str(trade.pk)).count() == 1
    assert RevenueStream.objects.get(pk=0).collected == trade.taker_fee + trade.maker_fee


def test_a_job_whose_task_never_ran_is_recovered_by_the_sweep(eth_market, user, other_user, settings):
    # The worker "died" after the commit: the job is pending and nobody processed it.
    trade = _cross(user, other_user)
    assert not RevenueEvent.objects.exists()
    settings.POST_TRADE_SWEEP_AGE_SECONDS = 0
    assert post_trade_jobs_sweep() == 1
    assert RevenueEvent.objects.filter(source_id=str(trade.pk)).count() == 1
    assert post_trade_jobs_sweep() == 0  # nothing left, nothing doubled


def test_sweep_leaves_fresh_jobs_to_their_task(eth_market, user, other_user, settings):
    _cross(user, other_user)
    settings.POST_TRADE_SWEEP_AGE_SECONDS = 3600
    assert post_trade_jobs_sweep() == 0


def test_with_the_broker_unreachable_trades_succeed_and_events_follow(
    eth_market, user, other_user, broker_down, settings, django_capture_on_commit_callbacks
):
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        trades = [_cross(user, other_user, quantity="0.1") for _ in range(3)]
    elapsed = time.monotonic() - started
    assert all(t is not None for t in trades)
    assert TradeOutbox.objects.filter(status="pending").count() == 3
    assert elapsed < 5, "publishing must not stall requests while the broker is down"
    # The broker is back: the periodic sweep delivers every fee exactly once.
    settings.POST_TRADE_SWEEP_AGE_SECONDS = 0
    assert post_trade_jobs_sweep() == 3
    assert RevenueEvent.objects.filter(source_type="trade").count() == 3
    total = sum(t.taker_fee + t.maker_fee for t in trades)
    assert RevenueEvent.objects.aggregate(s=Sum("gross_amount"))["s"] == total


def test_a_failing_job_is_recorded_and_retried_later(eth_market, user, other_user, monkeypatch):
    trade = _cross(user, other_user)
    import revenue.services as services

    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "revenue_event_record", boom)
    assert post_trade_jobs_process(job_ids=[trade.outbox.pk]) == 0
    job = TradeOutbox.objects.get(pk=trade.outbox.pk)
    assert job.status == "pending" and job.attempts == 1 and "disk full" in job.last_error
    monkeypatch.undo()
    assert post_trade_jobs_process(job_ids=[job.pk]) == 1


@pytest.fixture
def published(monkeypatch):
    """The tasks published (name, options), on a clock the test moves."""
    sent: list[tuple[str, dict]] = []
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(dispatch, "task_publish", lambda name, **options: sent.append((name, options)))
    monkeypatch.setattr(dispatch, "time", SimpleNamespace(monotonic=lambda: clock.now))
    return SimpleNamespace(sent=sent, clock=clock)


def test_one_post_trade_task_per_window_delayed_by_it(settings, published):
    settings.POST_TRADE_PUBLISH_WINDOW_SECONDS = 0.2
    assert dispatch.post_trade_jobs_dispatch(job_ids=[1]) is True
    published.clock.now += 0.15
    assert dispatch.post_trade_jobs_dispatch(job_ids=[2, 3]) is False  # the task on its way takes them
    assert published.sent == [(dispatch.POST_TRADE_JOBS_RUN, {"kwargs": {"job_ids": None}, "countdown": 0.2})]
    published.clock.now += 0.1  # the window is over
    assert dispatch.post_trade_jobs_dispatch(job_ids=[4]) is True
    assert len(published.sent) == 2


def test_without_a_window_or_in_process_each_batch_publishes_its_jobs(settings, published, eager_tasks):
    settings.POST_TRADE_PUBLISH_WINDOW_SECONDS = 0.2  # tasks run in process: a delay would mean nothing
    dispatch.post_trade_jobs_dispatch(job_ids=[1])
    dispatch.post_trade_jobs_dispatch(job_ids=[2])
    assert [options["kwargs"]["job_ids"] for _, options in published.sent] == [[1], [2]]


def test_a_windowed_task_takes_every_untried_job_once_and_leaves_failed_ones_to_the_sweep(eth_market, user, other_user):
    trades = [_cross(user, other_user, quantity="0.1") for _ in range(3)]
    TradeOutbox.objects.filter(trade=trades[0]).update(attempts=1, last_error="disk full")
    assert post_trade_jobs_run(job_ids=None) == 2
    assert sorted(RevenueEvent.objects.filter(source_type="trade").values_list("source_id", flat=True)) == sorted(
        str(t.pk) for t in trades[1:]
    )
    assert post_trade_jobs_run(job_ids=None) == 0  # nothing doubled
    assert TradeOutbox.objects.get(trade=trades[0]).status == "pending"


def test_a_catch_up_stops_after_its_rounds(eth_market, user, other_user):
    for _ in range(3):
        _cross(user, other_user, quantity="0.1")
    assert post_trade_jobs_catch_up(batch=2, rounds=1) == 2
    assert post_trade_jobs_catch_up(batch=2, rounds=5) == 1
    assert TradeOutbox.objects.filter(status="pending").count() == 0


def test_metrics_show_the_trades_whose_fees_are_not_yet_revenue_events(
    eth_market, user, other_user, client, django_capture_on_commit_callbacks
):
    """platform_trade_outbox_*: no revenue event exists for such a trade yet, so no delivery
    gauge sees a worker that never turns it into one (alert PlatformPostTradeBacklog)."""

    def sample(name: str) -> float:
        for line in client.get("/metrics").content.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
        raise AssertionError(f"{name} not exposed")

    assert sample("platform_trade_outbox_pending") == 0
    assert sample("platform_trade_outbox_oldest_pending_age_seconds") == 0
    with django_capture_on_commit_callbacks(execute=False):  # its task never runs: a worker down
        trade = _cross(user, other_user)
    TradeOutbox.objects.filter(trade=trade).update(created_at=trade.executed_at - timedelta(minutes=20))
    assert sample("platform_trade_outbox_pending") == 1
    assert sample("platform_trade_outbox_failing") == 0
    assert sample("platform_trade_outbox_oldest_pending_age_seconds") >= 20 * 60
    TradeOutbox.objects.filter(trade=trade).update(attempts=1, last_error="boom")
    assert sample("platform_trade_outbox_failing") == 1
    post_trade_jobs_process(job_ids=[trade.outbox.pk])
    assert sample("platform_trade_outbox_pending") == 0
