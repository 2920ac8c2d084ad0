"""The web side of the engine transport (orders.sequencer.zmq) against a real engine
server in a thread, and against none: answers after commit, 503 with Retry-After at once
when no engine is up, /healthz per engine."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import zmq
from django.db import connection, connections, transaction
from prometheus_client import REGISTRY

from bench.infra import free_port
from orders.models import Order, Wallet
from orders.sequencer import server as server_module
from orders.sequencer.commands import command_message, command_signature, place_command
from orders.sequencer.server import EngineServer
from orders.sequencer.shards import shards
from orders.sequencer.zmq import zmq_engine_call
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


@contextlib.contextmanager
def engine_leading() -> Iterator[EngineServer]:
    """The first shard's engine in a thread of this process, once it leads; stopped after."""
    server = EngineServer(shard=shards()[0])

    def run() -> None:
        try:
            server.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="engine", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.stats.leader_since is not None, what="the engine to lead", timeout=30)
        yield server
    finally:
        server.stopping.set()
        thread.join(timeout=10)


@pytest.fixture
def engine_thread(zmq_transport):
    with engine_leading() as server:
        yield server


def test_without_an_engine_an_order_answers_503_with_retry_after_at_once(zmq_transport, market):
    """The send gives up after CONNECT_WAIT_MS when no engine is connected: the answer does
    not wait out the engine's answer timeout (made long here, so that the bound holds on a
    loaded machine and still tells the two apart)."""
    zmq_transport.ENGINE_ANSWER_TIMEOUT_SECONDS = 20
    trader = trader_create(USDT="1000")
    began = time.monotonic()
    answer = trader.order(side="buy", type="limit", quantity="0.1", price="1000.00")
    assert answer.status_code == 503, answer.content
    assert answer.json()["error"]["code"] == "service_unavailable"
    assert answer["Retry-After"] == "1"
    assert time.monotonic() - began < 10, "waited for an engine that is not there"
    assert not Order.objects.exists()


def test_every_operation_the_engine_answers_declares_its_503(zmq_transport, market, staff_client):
    """Placements, cancels, cancel-all and a reference price answer 503 service_unavailable
    without an engine; the schema said 200/4xx only, so a client generated from it had no
    case for the answer a placement must be retried on (docs/api.md)."""
    trader = trader_create(USDT="1000")
    answers = {
        ("/api/orders", "post"): trader.order(side="buy", type="limit", quantity="0.1", price="1000.00"),
        ("/api/orders/{order_id}/cancel", "post"): trader.api.post("/api/orders/1/cancel"),
        ("/api/orders/cancel-all", "post"): trader.api.post("/api/orders/cancel-all", {}, format="json"),
        ("/api/admin/markets/{symbol}/reference-price", "post"): staff_client.post(
            "/api/admin/markets/ETH-USDT/reference-price", {"price": "2100.00"}, format="json"
        ),
    }
    schema = staff_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for (path, method), answer in answers.items():
        assert answer.status_code == 503, (path, answer.content)
        assert answer.json()["error"]["code"] == "service_unavailable" and answer["Retry-After"] == "1"
        declared = schema["paths"][path][method]["responses"]
        assert declared["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
        assert "Retry-After" in declared["503"]["description"], path


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


def test_the_engine_acts_only_on_signed_commands(engine_thread, market):
    """Whoever reaches the engine's socket cannot place orders for a user: a command
    without the platform's signature, or with a forged one, is dropped unanswered."""
    buyer = trader_create(USDT="1000")
    command = place_command(
        user_id=buyer.user.pk,
        fields={"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"},
    )
    payload = json.dumps(command).encode()
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(shards()[0].endpoints[0])
    try:
        for signature in (b"", b"forged" * 6, command_signature(payload + b" ")):
            socket.send_multipart([os.urandom(8), payload, signature])
        assert not socket.poll(1000), "the engine answered a command it should have dropped"
        assert not Order.objects.exists()
        socket.send_multipart([b"12345678", payload, command_signature(payload)])
        assert socket.poll(5000), "no answer to a signed command"
        request_id, answer = socket.recv_multipart()
        assert (request_id, json.loads(answer)["status"]) == (b"12345678", 201)
    finally:
        socket.close()
    assert Order.objects.count() == 1


def test_the_engine_process_freezes_its_loaded_books_once(zmq_transport, market, monkeypatch):
    """manage.py engine's server (freeze_loaded) settles its heap after loading; the server a
    test runs in its own process (above) does not."""
    settled: list[int] = []
    monkeypatch.setattr(server_module, "heap_settle", lambda: settled.append(1))
    server = EngineServer(shard=shards()[0], freeze_loaded=True)

    def run() -> None:
        try:
            server.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.stats.leader_since is not None, what="the engine to lead", timeout=30)
        assert settled == [1]
    finally:
        server.stopping.set()
        thread.join(timeout=10)


def _late(outcome: str) -> float:
    return REGISTRY.get_sample_value("platform_engine_commands_late_total", {"outcome": outcome}) or 0.0


def _buy(user_id: int, **fields: str) -> dict:
    return place_command(
        user_id=user_id,
        fields={"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00", **fields},
    )


def test_a_command_its_sender_gave_up_on_is_answered_503_and_not_applied(engine_thread, market, caplog):
    """An engine that reaches a command after its sender's wait is (nearly) over (paused,
    stalled, just taken over) answers 503 without applying it: the client's 503 does not
    hide an order placed behind its back, which a retry without client_order_id would
    place again (tests/reliability/test_engine_faults.py does it with a stopped engine)."""
    buyer = trader_create(USDT="1000")
    expired_before = _late("expired")
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(shards()[0].endpoints[0])
    try:
        # Sent with a wait that is already over by the time the engine reads it.
        stale = command_message(b"stale---", _buy(buyer.user.pk), timeout=-1.0)
        with caplog.at_level(logging.WARNING, logger="orders.sequencer.server"):
            socket.send_multipart(stale)
            assert socket.poll(5000), "no answer to an expired command"
            request_id, payload = socket.recv_multipart()
        answer = json.loads(payload)
        assert (request_id, answer["status"], answer["error"]["code"]) == (b"stale---", 503, "service_unavailable")
        assert "not applied" in answer["error"]["message"]
        assert answer["error"]["retry_after"] == 1
        assert not Order.objects.exists()
        assert _late("expired") == expired_before + 1
        assert any("1 commands not applied" in r.getMessage() for r in caplog.records), caplog.text
        # The same command within its sender's wait is applied.
        socket.send_multipart(command_message(b"fresh---", _buy(buyer.user.pk), timeout=5.0))
        assert socket.poll(5000), "no answer to a command in time"
        request_id, payload = socket.recv_multipart()
        assert (request_id, json.loads(payload)["status"]) == (b"fresh---", 201)
    finally:
        socket.close()
    assert Order.objects.count() == 1


@pytest.mark.postgres  # a database that makes the batch wait (SQLite's test database refuses at once)
def test_a_batch_that_waited_past_its_senders_wait_is_rolled_back_not_committed(
    engine_thread, market, settings, caplog
):
    """A command applied in time whose batch then waits for the database (a row lock an
    operator holds) past its sender's wait: the batch is rolled back before COMMIT and the
    command answered 503 unapplied, as its client was; nothing of it is committed."""
    buyer = trader_create(USDT="1000")
    expired_before, late_before = _late("expired"), _late("answered_late")
    settings.ENGINE_ANSWER_TIMEOUT_SECONDS = 0.8
    with caplog.at_level(logging.WARNING, logger="orders.sequencer"), _wallets_locked(buyer.user) as release:
        answer = zmq_engine_call(_buy(buyer.user.pk, client_order_id="late-1"), market="ETH-USDT")
        # The wait is over when the 503 comes: the command's answer_by has passed.
        assert (answer["status"], answer["error"]["code"]) == (503, "service_unavailable"), answer
        release()
        wait_until(lambda: _late("expired") == expired_before + 1, what="the overdue command counted", timeout=10)
    assert any("batch rolled back: 1 of its 1 commands outlived" in r.getMessage() for r in caplog.records)
    assert not Order.objects.filter(client_order_id="late-1").exists()
    assert _late("answered_late") == late_before
    # The engine goes on: the same order, sent again, is placed.
    settings.ENGINE_ANSWER_TIMEOUT_SECONDS = 5
    again = zmq_engine_call(_buy(buyer.user.pk, client_order_id="late-1"), market="ETH-USDT")
    assert again["status"] == 201, again
    assert Order.objects.filter(client_order_id="late-1").count() == 1


@pytest.mark.postgres  # a COMMIT made slow by a deferred trigger
def test_an_answer_its_sender_no_longer_waits_for_is_counted_and_logged(engine_thread, market, settings, caplog):
    """What the engine cannot take back: a batch whose COMMIT itself outlasts its sender's
    wait (here a deferred trigger sleeping at COMMIT). The client had its 503, the order
    stands: the engine counts it and logs who and what, for support to tell the client."""
    buyer = trader_create(USDT="1000")
    late_before = _late("answered_late")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_commit_stall() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(1.2); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE CONSTRAINT TRIGGER test_commit_stall AFTER INSERT ON orders_order"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_commit_stall()"
        )
    try:
        settings.ENGINE_ANSWER_TIMEOUT_SECONDS = 0.8
        with caplog.at_level(logging.WARNING, logger="orders.sequencer.server"):
            answer = zmq_engine_call(_buy(buyer.user.pk, client_order_id="late-2"), market="ETH-USDT")
            assert (answer["status"], answer["error"]["code"]) == (503, "service_unavailable"), answer
            wait_until(lambda: _late("answered_late") == late_before + 1, what="the late answer counted", timeout=10)
        order = Order.objects.get(user=buyer.user, client_order_id="late-2")
        lines = [r.getMessage() for r in caplog.records if "after its sender gave up" in r.getMessage()]
        assert len(lines) == 1, caplog.text
        assert f"user {buyer.user.pk}" in lines[0] and f"order {order.pk} open" in lines[0], lines
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_commit_stall ON orders_order")
            cursor.execute("DROP FUNCTION IF EXISTS test_commit_stall()")


@contextlib.contextmanager
def _wallets_locked(user) -> Iterator[Callable[[], None]]:
    """The user's wallet rows locked by another transaction (an operator's, say) until the
    release it yields is called, or the block ends: a batch touching them waits."""
    holding, held = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(Wallet.objects.select_for_update().filter(user=user))
                held.set()
                holding.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10)

    def release() -> None:
        holding.set()
        holder.join(10)

    try:
        yield release
    finally:
        release()


def _a_lock_awaited() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(  # this database's sessions (a row lock's wait has no database of its own)
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.datname = current_database()"
        )
        return bool(cursor.fetchone()[0])


def test_healthz_reports_each_engines_clock_offset(engine_thread, client):
    """Commands carry wall-clock deadlines: an engine whose clock runs ahead of the web
    host's would refuse them; /healthz shows by how much (here one host: about 0)."""
    engine = client.get("/healthz").json()["engines"]["main"]
    assert abs(engine["clock_offset_s"]) < 0.5, engine
    assert "clock" not in engine


def test_healthz_counts_the_live_orders_the_engine_holds_now(engine_thread, market, client):
    """`live_orders` was the count loaded at start and never changed: a fresh platform read
    0 with the demo's 30 orders resting, and it said nothing of the book afterwards."""
    assert client.get("/healthz").json()["engines"]["main"]["live_orders"] == 0
    maker = trader_create(ETH="1")
    for price in ("2001.00", "2002.00"):
        assert maker.order(side="sell", type="limit", quantity="0.1", price=price).status_code == 201
    assert client.get("/healthz").json()["engines"]["main"]["live_orders"] == 2
    taker = trader_create(USDT="1000")
    assert taker.order(side="buy", type="limit", quantity="0.1", price="2001.00").json()["status"] == "filled"
    assert client.get("/healthz").json()["engines"]["main"]["live_orders"] == 1


@pytest.mark.postgres  # a batch held by a row lock while more commands arrive
def test_an_engine_that_stops_answers_what_it_committed_and_refuses_what_waits(engine_thread, market):
    """Stopping (SIGTERM) while a batch runs and more commands wait: the batch commits and
    is answered (its answers were dropped with the socket closed at once: 503s for orders
    placed), and the commands still waiting are answered 503 at once, not applied (they
    waited out their senders' whole wait)."""
    buyer = trader_create(USDT="1000")
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(shards()[0].endpoints[0])
    answers = {}
    try:
        with _wallets_locked(buyer.user) as release:
            socket.send_multipart(command_message(b"in-batch", _buy(buyer.user.pk, client_order_id="s-0"), timeout=10))
            wait_until(_a_lock_awaited, what="the batch waiting for the wallets' lock", timeout=10)
            for n in (1, 2, 3):
                waiting = _buy(buyer.user.pk, client_order_id=f"s-{n}")
                socket.send_multipart(command_message(f"waits-{n}".encode(), waiting, timeout=10))
            # No window onto the engine's queue while its batch waits: a margin for three local
            # (ipc) messages to reach its socket, not a wait for a state.
            time.sleep(0.2)
            engine_thread.stopping.set()
            release()
        while len(answers) < 4:
            assert socket.poll(3000), f"no answer within 3 s; answered so far: {sorted(answers)}"
            request_id, payload = socket.recv_multipart()
            answers[request_id] = json.loads(payload)
    finally:
        socket.close()
    assert answers[b"in-batch"]["status"] == 201, answers
    for n in (1, 2, 3):
        answer = answers[f"waits-{n}".encode()]
        assert (answer["status"], answer["error"]["code"]) == (503, "service_unavailable"), answer
        assert "not applied" in answer["error"]["message"]
    assert list(Order.objects.values_list("client_order_id", flat=True)) == ["s-0"]


def test_an_engine_started_without_bind_leads_on_an_endpoint_of_its_shard_it_can_bind(zmq_transport, market):
    """Every engine of a shard is started alike (`manage.py engine --shard NAME`: the
    Procfile's `config.topology engine`, the systemd unit; none passes --bind). Each bound the
    shard's first endpoint, so a standby taking over where that one was held (the engine
    before it, fenced but still bound on the same host; on another host, not an address of
    its own) died of "Address already in use" instead of leading. It leads on the first of
    the shard's endpoints it can bind; the web connects to all of them."""
    held_at, free_at = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    zmq_transport.ENGINE_SHARDS = f"main=*@{held_at},{free_at}"
    held = zmq.Context.instance().socket(zmq.ROUTER)  # the engine before it, still bound
    held.setsockopt(zmq.LINGER, 0)
    held.bind(held_at)
    try:
        with engine_leading() as server:
            wait_until(lambda: server.endpoint == free_at, what="the engine bound on the free endpoint", timeout=10)
            held.close()  # the engine before stood by: only the new leader receives
            trader = trader_create(USDT="1000")
            answer = trader.order(side="buy", type="limit", quantity="0.1", price="1000.00")
            assert answer.status_code == 201, answer.content
    finally:
        held.close()


def test_an_engine_that_no_longer_leads_shows_no_queue(engine_thread, market):
    """The queue depth is the leader's (largest over the live engines): one that stopped
    leading (a stop, a lost leadership, then standing by) must not keep its last batch's."""
    trader = trader_create(USDT="1000")
    assert trader.order(side="buy", type="limit", quantity="0.1", price="1000.00").status_code == 201
    assert REGISTRY.get_sample_value("platform_engine_queue_depth") == 1
    engine_thread.stopping.set()
    wait_until(
        lambda: REGISTRY.get_sample_value("platform_engine_queue_depth") == 0,
        what="the queue depth at 0 once the engine left its leading loop",
        timeout=15,
    )


def test_metrics_say_whether_each_shards_engine_answers(zmq_transport, client):
    """platform_engine_up{shard}, asked at the scrape (alert PlatformEngineDown): a dead engine
    writes no sample of its own, so the web asks."""
    line = 'platform_engine_up{shard="main"}'
    assert f"{line} 0.0" in client.get("/metrics").content.decode()
    with engine_leading():
        assert f"{line} 1.0" in client.get("/metrics").content.decode()


def test_health_pings_are_not_counted_as_round_trips_of_orders(zmq_transport, client):
    """platform_engine_request_seconds is what the engine adds to every order. The pings of
    /healthz and of each scrape were counted in it: on an idle platform its quantiles were
    the pings', and a hung engine (it takes the connection and answers nothing: SIGSTOP)
    made every ping a 0.5 s "round trip", so PlatformEngineRoundTripSlow fired beside
    PlatformEngineDown with no order sent (seen pending under scripts/serve and Prometheus)."""
    hung = zmq.Context.instance().socket(zmq.ROUTER)
    hung.setsockopt(zmq.LINGER, 0)
    hung.bind(shards()[0].endpoints[0])
    before = REGISTRY.get_sample_value("platform_engine_request_seconds_count") or 0.0
    try:
        for _ in range(2):
            assert 'platform_engine_up{shard="main"} 0.0' in client.get("/metrics").content.decode()
        assert client.get("/healthz").json()["engines"] == {"main": "down"}
    finally:
        hung.close()
    assert (REGISTRY.get_sample_value("platform_engine_request_seconds_count") or 0.0) == before
