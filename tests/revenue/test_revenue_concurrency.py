"""Stream totals stay equal to the sum of their events when many workers process jobs
and collect revenue at once (real PostgreSQL commits)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import Sum

from orders.engine.requests import OrderRequest
from orders.models import Trade, TradeOutbox
from orders.services.orders import order_place
from revenue.models import RevenueEvent, RevenueStream
from revenue.services import post_trade_jobs_process, revenue_collect
from tests.factories import UserFactory, fund

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _run_threads(targets):
    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)
            finally:
                connections.close_all()

        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_stream_totals_equal_event_sums_under_concurrency(eth_market):
    makers = [UserFactory() for _ in range(4)]
    takers = [UserFactory() for _ in range(4)]
    for maker, taker in zip(makers, takers, strict=True):
        fund(maker, "ETH", "5")
        fund(taker, "USDT", "50000")
        for i in range(5):
            order_place(
                user=maker,
                request=OrderRequest(
                    market="ETH-USDT", side="sell", type="limit", quantity="0.5", price=f"{2000 + i}.00"
                ),
            )

    def trade(taker):
        return lambda: [
            order_place(user=taker, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="0.5"))
            for _ in range(4)
        ]

    _run_threads([trade(t) for t in takers])
    job_ids = list(TradeOutbox.objects.values_list("pk", flat=True))
    assert len(job_ids) == Trade.objects.count() >= 16

    # Every worker processes every job (replays included) while others collect directly.
    def process():
        post_trade_jobs_process(job_ids=job_ids)

    def collect(offset):
        return lambda: [
            revenue_collect(stream=0, amount="0.01", description="x", source_type="manual", source_id=f"{offset}-{i}")
            for i in range(10)
        ]

    _run_threads([process, process, process, collect(1), collect(2), collect(3)])
    assert TradeOutbox.objects.filter(status="pending").count() == 0
    fees = Trade.objects.aggregate(t=Sum("taker_fee"), m=Sum("maker_fee"))
    assert RevenueEvent.objects.filter(source_type="trade").count() == Trade.objects.count()
    assert (
        RevenueEvent.objects.filter(source_type="trade").aggregate(s=Sum("gross_amount"))["s"] == fees["t"] + fees["m"]
    )
    for stream in RevenueStream.objects.all():
        events_total = stream.events.aggregate(s=Sum("gross_amount"))["s"] or Decimal(0)
        assert stream.collected == events_total, stream.name
