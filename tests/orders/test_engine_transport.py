"""The web side of the engine transport (orders.sequencer.zmq) against a real engine
server in a thread, and against none: answers after commit, 503 with Retry-After at once
when no engine is up, /healthz per engine."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from orders.models import Order
from orders.sequencer.server import EngineServer
from orders.sequencer.shards import shards
from tests.orders.support import trader_create
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def zmq_transport(settings, tmp_path):
    settings.ENGINE_TRANSPORT = "zmq"
    settings.ENGINE_SHARDS = f"main=*@ipc://{tmp_path}/engine.sock"
    settings.ENGINE_ANSWER_TIMEOUT_SECONDS = 5
    settings.VAR_DIR = tmp_path
    return settings


@pytest.fixture
def engine_thread(zmq_transport):
    server = EngineServer(shard=shards()[0])

    def run() -> None:
        try:
            server.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="engine", daemon=True)
    thread.start()
    wait_until(lambda: server.stats.leader_since is not None, what="the engine to lead", timeout=30)
    yield server
    server.stopping.set()
    thread.join(timeout=10)


def test_without_an_engine_an_order_answers_503_with_retry_after_at_once(zmq_transport, market):
    trader = trader_create(USDT="1000")
    began = time.monotonic()
    answer = trader.order(side="buy", type="limit", quantity="0.1", price="1000.00")
    assert answer.status_code == 503, answer.content
    assert answer.json()["error"]["code"] == "service_unavailable"
    assert answer["Retry-After"] == "1"
    assert time.monotonic() - began < 1.0, "waited for an engine that is not there"
    assert not Order.objects.exists()


def test_orders_go_through_the_engine_process_and_answer_once_committed(engine_thread, market, client):
    maker, taker = trader_create(ETH="1"), trader_create(USDT="5000")
    resting = maker.order(side="sell", type="limit", quantity="0.5", price="2000.00", client_order_id="m1")
    assert resting.status_code == 201, resting.content
    filled = taker.order(side="buy", type="limit", quantity="0.5", price="2000.00")
    assert filled.status_code == 201, filled.content
    body = filled.json()
    assert (body["status"], body["fills"][0]["price"]) == ("filled", "2000.00000000")
    # The answer is what is committed: reading it back gives the same.
    assert taker.api.get(f"/api/orders/{body['id']}").json() == body
    repeat = maker.order(side="sell", type="limit", quantity="0.5", price="2000.00", client_order_id="m1")
    assert (repeat.status_code, repeat.json()["id"]) == (200, resting.json()["id"])
    assert engine_thread.stats.batches >= 2
    health = client.get("/healthz").json()
    assert health["engines"]["main"]["status"] == "ok"
