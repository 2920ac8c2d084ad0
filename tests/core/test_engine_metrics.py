"""The engine's metrics (core.metrics, set in orders.sequencer.loop): batch time, commands
per batch and the queue depth at the start of the last batch."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from orders.sequencer import commands as c
from orders.sequencer.loop import Sequencer
from tests.factories import fund, market_create

pytestmark = pytest.mark.django_db


def sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return 0.0 if value is None else value


def test_a_batch_is_timed_counted_and_sets_the_queue_depth(user) -> None:
    market_create("ETH-USDT")
    fund(user, "USDT", "10000")
    batches = sample("platform_engine_batch_seconds_count")
    commands = sample("platform_engine_batch_commands_sum")
    place = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}
    orders = [c.place_command(user_id=user.pk, fields={**place, "client_order_id": f"m-{i}"}) for i in range(3)]

    answers = Sequencer().run_batch(orders)

    assert [answer["status"] for answer in answers] == [201, 201, 201]
    assert sample("platform_engine_batch_seconds_count") == batches + 1
    assert sample("platform_engine_batch_commands_sum") == commands + 3
    assert sample("platform_engine_queue_depth") == 3
