"""Consumed trade outbox rows are deleted once TRADE_OUTBOX_RETENTION_DAYS old (orders.tasks.
trade_outbox_prune, docs/operations.md "Retention"): one row per trade ever made stayed in
the table for good, done and never read again. The trade and its revenue events stay;
pending rows stay whatever their age; a task replayed for a deleted row does nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from orders.engine.requests import OrderRequest
from orders.models import Trade, TradeOutbox, TradeOutboxStatus
from orders.services.orders import order_place
from orders.services.outbox import trade_outbox_consumed_delete
from orders.tasks import trade_outbox_prune
from revenue.models import RevenueEvent
from revenue.services import post_trade_job_process, post_trade_jobs_process
from tests.factories import fund, market_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def eth_market(db):
    return market_create("ETH-USDT")


def _trades(maker, taker, count: int) -> list[Trade]:
    fund(maker, "ETH", str(count))
    fund(taker, "USDT", "1000000")
    for _ in range(count):
        ask = OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="1", price="2000.00")
        order_place(user=maker, request=ask)
        order_place(user=taker, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="1"))
    return list(Trade.objects.order_by("id"))


def test_consumed_rows_go_once_old_and_records_stay(eth_market, user, other_user, settings):
    trades = _trades(user, other_user, 5)
    old, recent, pending_old = trades[:3], trades[3], trades[4]
    post_trade_jobs_process(job_ids=[t.outbox.pk for t in trades[:4]])  # the last one not consumed yet
    long_ago = timezone.now() - timedelta(days=settings.TRADE_OUTBOX_RETENTION_DAYS, hours=1)
    TradeOutbox.objects.filter(trade__in=[*old, pending_old]).update(created_at=long_ago)
    events = RevenueEvent.objects.count()
    assert events == 4
    deleted_job_ids = [trade.outbox.pk for trade in old]

    assert trade_outbox_prune() == 3
    assert set(TradeOutbox.objects.values_list("trade_id", "status")) == {
        (recent.pk, TradeOutboxStatus.DONE),
        (pending_old.pk, TradeOutboxStatus.PENDING),
    }
    assert Trade.objects.count() == 5 and RevenueEvent.objects.count() == events
    assert trade_outbox_prune() == 0

    # A replayed task for a deleted row does nothing; the pending one is still processed.
    assert post_trade_jobs_process(job_ids=deleted_job_ids) == 0
    assert post_trade_job_process(job_id=pending_old.outbox.pk) is True
    assert RevenueEvent.objects.count() == events + 1


def test_rows_are_deleted_a_batch_at_a_time(eth_market, user, other_user):
    trades = _trades(user, other_user, 5)
    post_trade_jobs_process(job_ids=[t.outbox.pk for t in trades])
    TradeOutbox.objects.update(created_at=timezone.now() - timedelta(days=30))
    assert trade_outbox_consumed_delete(older_than=timedelta(days=7), batch=2, rounds=2) == 4
    assert trade_outbox_consumed_delete(older_than=timedelta(days=7), batch=2) == 1
    assert not TradeOutbox.objects.exists()


def test_the_prune_is_scheduled_hourly():
    task = PeriodicTask.objects.get(task="orders.tasks.trade_outbox_prune")
    assert task.enabled and (task.interval.every, task.interval.period) == (3600, "seconds")
