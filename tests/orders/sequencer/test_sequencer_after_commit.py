"""What runs after a batch's commit (remembering closed orders, the announcements) cannot
undo or redo the batch: a failure there is logged, the commands keep their committed
answers, and nothing is applied twice."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from orders.models import Order
from orders.sequencer import loop as sequencer_loop
from orders.sequencer.commands import place_command
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund
from tests.orders.invariants import assert_invariants

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: on_commit runs after them


def _place(user: Any, **fields: str) -> dict[str, Any]:
    return place_command(user_id=user.pk, fields={"market": "ETH-USDT", "type": "limit", **fields})


def test_a_failure_after_the_commit_keeps_the_answers_and_applies_nothing_twice(market, monkeypatch, caplog):
    buyers = [UserFactory() for _ in range(2)]
    for buyer in buyers:
        fund(buyer, "USDT", "5000")
    sequencer = Sequencer()
    sequencer.load()

    def streams_fail(**_: Any) -> Any:
        raise RuntimeError("a bug in what is published after the commit")

    monkeypatch.setattr(sequencer_loop, "streams_batch", streams_fail)
    answers = sequencer.run_batch([_place(buyer, side="buy", quantity="0.1", price="1500.00") for buyer in buyers])
    assert [answer["status"] for answer in answers] == [201, 201]
    assert Order.objects.count() == 2  # one each: the committed batch was not run again
    assert "a bug in what is published after the commit" in caplog.text
    monkeypatch.undo()
    seller = UserFactory()
    fund(seller, "ETH", "1")
    sold = sequencer.run_batch([_place(seller, side="sell", quantity="0.2", price="1500.00")])
    assert [fill["quantity"] for fill in sold[0]["order"]["fills"]] == ["0.10000000", "0.10000000"]
    assert_invariants()


def test_a_batch_the_database_refuses_for_another_reason_is_logged_before_each_command_runs_alone(
    market, monkeypatch, caplog
):
    # Seen under faults on PostgreSQL: `prepared statement "_pg3_49" does not exist`
    # (ProgrammingError, neither retried nor a lost connection) sank a batch, and its first
    # placement was recorded as `error` / `processing_failed` without a line saying why.
    from django.db import ProgrammingError

    buyer = UserFactory()
    fund(buyer, "USDT", "5000")
    sequencer = Sequencer()
    sequencer.load()
    real_batch = sequencer._batch
    calls = {"n": 0}

    def refused_once(commands: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ProgrammingError('prepared statement "_pg3_49" does not exist')
        return real_batch(commands, **kwargs)

    monkeypatch.setattr(sequencer, "_batch", refused_once)
    answers = sequencer.run_batch([_place(buyer, side="buy", quantity="0.1", price="1500.00")])
    assert [answer["status"] for answer in answers] == [201]
    assert "batch refused by the database" in caplog.text
    assert 'prepared statement "_pg3_49" does not exist' in caplog.text
    assert_invariants()


def test_an_order_recorded_as_processing_failed_is_counted_and_logged_with_its_context(market, monkeypatch, caplog):
    # A bug failing every placement: each order recorded as `error` / `processing_failed`
    # in a transaction of its own, answered 201, so no 5xx for PlatformServerErrors; and it
    # was neither counted (platform_orders_final_total counts a committed batch's orders
    # only) nor given a line naming it: no alert could fire, the log said "batch failed" only.
    buyer = UserFactory()
    fund(buyer, "USDT", "5000")
    sequencer = Sequencer()
    sequencer.load()
    labels = {"status": "error", "reason": "processing_failed"}
    before = REGISTRY.get_sample_value("platform_orders_final_total", labels) or 0.0

    def a_bug(commands: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in matching")

    monkeypatch.setattr(sequencer, "_batch", a_bug)
    command = place_command(
        user_id=buyer.pk,
        fields={"market": "ETH-USDT", "type": "limit", "side": "buy", "quantity": "0.1", "price": "1500.00"},
        correlation_id="req-failing-order",
    )
    with caplog.at_level(logging.INFO, logger="orders.sequencer"):
        (answer,) = sequencer.run_batch([command])
    order = Order.objects.get(pk=answer["order_id"])
    assert (order.status, order.status_reason) == ("error", "processing_failed")
    assert REGISTRY.get_sample_value("platform_orders_final_total", labels) == before + 1
    (line,) = [record for record in caplog.records if getattr(record, "order_id", None) == order.pk]
    assert line.levelno == logging.ERROR
    assert (line.user_id, line.market, line.correlation_id) == (buyer.pk, "ETH-USDT", "req-failing-order")
    assert_invariants()
