"""orders.services.engine_async: the ZeroMQ round trip awaited on the event loop. Commands
sent while others wait (the loop is not blocked by a wait), answers matched by request id
whatever their order, signed as the synchronous transport signs them; no engine: 503."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import zmq
import zmq.asyncio
from asgiref.sync import async_to_sync
from django.test import override_settings
from prometheus_client import REGISTRY

from core.encoding import json_compact
from orders.errors import OrderNotFound
from orders.sequencer.commands import ANSWER_BY, APPLY_BY, ELSEWHERE, cancel_command, command_signed, error_answer
from orders.sequencer.zmq import zmq_engine_call
from orders.services.engine_async import engine_call_async


def _endpoint(tmp_path: Any) -> str:
    return f"ipc://{tmp_path}/engine.sock"


def test_answers_come_back_to_their_request_while_others_wait(tmp_path):
    endpoint = _endpoint(tmp_path)

    async def scenario() -> tuple[list[Any], list[Any]]:
        engine = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        engine.bind(endpoint)
        try:
            calls = [
                asyncio.create_task(engine_call_async({"op": "ping", "n": n}, market="ETH-USDT")) for n in range(3)
            ]
            received = [await asyncio.wait_for(engine.recv_multipart(), 5) for _ in range(3)]
            # All three arrived before any answer: no request held the loop while waiting.
            for peer, request_id, payload, signature in reversed(received):
                assert command_signed(payload, signature)
                command = json.loads(payload)
                await engine.send_multipart([peer, request_id, json.dumps({"status": 200, "n": command["n"]}).encode()])
            return [await call for call in calls], [json.loads(r[2])["n"] for r in received]
        finally:
            engine.close(linger=0)

    with override_settings(ENGINE_TRANSPORT="zmq", ENGINE_SHARDS=f"all=*@{endpoint}", ENGINE_ANSWER_TIMEOUT_SECONDS=5):
        answers, sent = async_to_sync(scenario)()
    assert sorted(sent) == [0, 1, 2]
    assert answers == [{"status": 200, "n": n} for n in range(3)]


@pytest.mark.parametrize("engine", ["none bound", "silent"])
def test_no_answer_is_a_503_not_a_hang(tmp_path, engine):
    endpoint = _endpoint(tmp_path)

    async def scenario() -> Any:
        silent = None
        if engine == "silent":
            silent = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
            silent.bind(endpoint)
        try:
            return await engine_call_async({"op": "ping"}, market="ETH-USDT")
        finally:
            if silent is not None:
                silent.close(linger=0)

    with override_settings(ENGINE_TRANSPORT="zmq", ENGINE_SHARDS=f"all=*@{endpoint}", ENGINE_ANSWER_TIMEOUT_SECONDS=1):
        answer = async_to_sync(scenario)()
    assert answer["status"] == 503 and answer["error"]["code"] == "service_unavailable"
    assert answer["error"]["retry_after"] == 1


@pytest.mark.parametrize("holder", ["eth", "rest"])
def test_a_cancel_goes_to_every_shard_and_the_holders_answer_is_kept(tmp_path, holder):
    """A cancel names no market: with two shards both are asked at once; the one whose
    markets do not hold the order answers 404 `elsewhere`, the other's answer is kept."""
    endpoints = {"eth": f"ipc://{tmp_path}/eth.sock", "rest": f"ipc://{tmp_path}/rest.sock"}
    held = {"status": 200, "order_id": 7, "order": {"id": "7", "status": "cancelled"}}
    elsewhere = {**error_answer(OrderNotFound()), ELSEWHERE: True}
    command = cancel_command(user_id=3, order_id=7, check_user=True)

    async def serve(socket: Any, answer: dict[str, Any]) -> dict[str, Any]:
        peer, request_id, payload, signature = await asyncio.wait_for(socket.recv_multipart(), 5)
        assert command_signed(payload, signature)
        await socket.send_multipart([peer, request_id, json.dumps(answer).encode()])
        received: dict[str, Any] = json.loads(payload)
        return received

    async def scenario() -> tuple[Any, list[Any]]:
        engines = {name: zmq.asyncio.Context.instance().socket(zmq.ROUTER) for name in endpoints}
        try:
            for name, socket in engines.items():
                socket.bind(endpoints[name])
            served = [
                asyncio.create_task(serve(socket, held if name == holder else elsewhere))
                for name, socket in engines.items()
            ]
            answer = await engine_call_async(command, market=None)
            return answer, [await task for task in served]
        finally:
            for socket in engines.values():
                socket.close(linger=0)

    shards = f"eth=ETH-USDT@{endpoints['eth']};rest=*@{endpoints['rest']}"
    with override_settings(ENGINE_TRANSPORT="zmq", ENGINE_SHARDS=shards, ENGINE_ANSWER_TIMEOUT_SECONDS=5):
        sent = time.time()
        answer, received = async_to_sync(scenario)()
    assert answer == held
    assert [_undated(r, sent=sent, timeout=5) for r in received] == [command, command]


def _undated(received: dict[str, Any], *, sent: float, timeout: float) -> dict[str, Any]:
    """The command as the caller gave it, once its deadlines are checked: the engine applies
    it only until 75% of its sender's wait (apply_by), which ends at answer_by."""
    command = dict(received)
    apply_by, answer_by = command.pop(APPLY_BY), command.pop(ANSWER_BY)
    assert sent <= answer_by - timeout <= time.time()
    assert apply_by == pytest.approx(answer_by - timeout * 0.25)
    return command


def test_every_answer_of_a_burst_reaches_its_request(tmp_path):
    """Answers arriving together are all read (the socket's descriptor signals an edge,
    not each message), in any order, while more requests are being sent."""
    endpoint = _endpoint(tmp_path)
    count = 300

    async def scenario() -> tuple[list[Any], set[bytes]]:
        engine = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        engine.bind(endpoint)
        try:
            calls = [
                asyncio.create_task(engine_call_async({"op": "ping", "n": n}, market="ETH-USDT")) for n in range(count)
            ]
            received = [await asyncio.wait_for(engine.recv_multipart(), 5) for _ in range(count)]
            for peer, request_id, payload, _ in reversed(received):
                await engine.send_multipart([peer, request_id, json.dumps({"n": json.loads(payload)["n"]}).encode()])
            return [await call for call in calls], {r[1] for r in received}
        finally:
            engine.close(linger=0)

    with override_settings(ENGINE_TRANSPORT="zmq", ENGINE_SHARDS=f"all=*@{endpoint}", ENGINE_ANSWER_TIMEOUT_SECONDS=5):
        answers, ids = async_to_sync(scenario)()
    assert answers == [{"n": n} for n in range(count)]
    assert len(ids) == count  # each request its own id


def test_a_late_answer_is_dropped_and_the_next_request_gets_its_own(tmp_path):
    endpoint = _endpoint(tmp_path)

    async def scenario() -> tuple[Any, Any, set[bytes]]:
        engine = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        engine.bind(endpoint)
        try:
            late = await engine_call_async({"op": "ping", "n": 1}, market="ETH-USDT")  # not answered in time
            first = await asyncio.wait_for(engine.recv_multipart(), 5)
            await engine.send_multipart([first[0], first[1], b'{"n": 1}'])  # the late answer
            call = asyncio.create_task(engine_call_async({"op": "ping", "n": 2}, market="ETH-USDT"))
            second = await asyncio.wait_for(engine.recv_multipart(), 5)
            await engine.send_multipart([second[0], second[1], b'{"n": 2}'])
            return late, await call, {first[1], second[1]}
        finally:
            engine.close(linger=0)

    with override_settings(
        ENGINE_TRANSPORT="zmq", ENGINE_SHARDS=f"all=*@{endpoint}", ENGINE_ANSWER_TIMEOUT_SECONDS=0.2
    ):
        late, answer, ids = async_to_sync(scenario)()
    assert late["status"] == 503 and late["error"]["code"] == "service_unavailable"
    assert answer == {"n": 2}
    assert len(ids) == 2  # each request its own id


def test_an_engine_that_binds_within_the_connect_wait_answers(tmp_path):
    """No engine yet when the command is sent: it is sent once one is connected (within
    CONNECT_WAIT_MS), not refused."""
    endpoint = _endpoint(tmp_path)

    async def scenario() -> Any:
        engine = zmq.asyncio.Context.instance().socket(zmq.ROUTER)

        async def serve() -> None:
            await asyncio.sleep(0.1)
            engine.bind(endpoint)
            peer, request_id, payload, _ = await asyncio.wait_for(engine.recv_multipart(), 5)
            await engine.send_multipart([peer, request_id, payload])

        server = asyncio.create_task(serve())
        try:
            answer = await engine_call_async({"op": "ping", "n": 3}, market="ETH-USDT")
            await server
            return answer
        finally:
            engine.close(linger=0)

    with override_settings(ENGINE_TRANSPORT="zmq", ENGINE_SHARDS=f"all=*@{endpoint}", ENGINE_ANSWER_TIMEOUT_SECONDS=5):
        sent = time.time()
        answer = async_to_sync(scenario)()
    assert _undated(answer, sent=sent, timeout=5) == {"op": "ping", "n": 3}


@pytest.mark.parametrize("path", ["async", "sync"])
def test_a_round_trip_to_the_engine_is_timed_from_send_to_answer(tmp_path, path):
    """platform_engine_request_seconds: the web side's whole wait for the engine (here an
    engine that answers 50 ms after the command arrived), on both transports' paths."""
    endpoint = _endpoint(tmp_path)
    before_count = REGISTRY.get_sample_value("platform_engine_request_seconds_count") or 0.0
    before_sum = REGISTRY.get_sample_value("platform_engine_request_seconds_sum") or 0.0
    engine = zmq.Context.instance().socket(zmq.ROUTER)
    engine.setsockopt(zmq.LINGER, 0)
    engine.bind(endpoint)

    def answer_late() -> None:
        assert engine.poll(5000)
        peer, request_id, _, _ = engine.recv_multipart()
        time.sleep(0.05)
        engine.send_multipart([peer, request_id, json.dumps({"status": 200}).encode()])

    responder = threading.Thread(target=answer_late)
    responder.start()
    try:
        with override_settings(
            ENGINE_TRANSPORT="zmq", ENGINE_SHARDS=f"all=*@{endpoint}", ENGINE_ANSWER_TIMEOUT_SECONDS=5
        ):
            if path == "async":
                answer = async_to_sync(engine_call_async)({"op": "ping"}, market="ETH-USDT")
            else:
                answer = zmq_engine_call({"op": "ping"}, market="ETH-USDT")
    finally:
        responder.join(10)
        engine.close(linger=0)
    assert answer == {"status": 200}
    assert REGISTRY.get_sample_value("platform_engine_request_seconds_count") == before_count + 1
    waited = (REGISTRY.get_sample_value("platform_engine_request_seconds_sum") or 0.0) - before_sum
    assert 0.05 <= waited < 5


HUGE = 10**30 + 1  # an amount the columns hold, sent as a JSON number: past 64 bits


@pytest.mark.parametrize("client", ["async", "sync"])
def test_a_commands_values_reach_the_engine_and_come_back_exactly(tmp_path, client):
    """A client's values travel as received: an integer past 64 bits arrives as that integer,
    not a float, through either client, and so does the answer that carries it (written as
    the engine writes answers, core.encoding.json_compact)."""
    endpoint = _endpoint(tmp_path)
    command = {"op": "place", "quantity": HUGE}

    async def scenario() -> Any:
        engine = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        engine.bind(endpoint)
        try:
            if client == "async":
                call = asyncio.create_task(engine_call_async(command, market="ETH-USDT"))
            else:
                call = asyncio.create_task(asyncio.to_thread(zmq_engine_call, command, market="ETH-USDT"))
            peer, request_id, payload, signature = await asyncio.wait_for(engine.recv_multipart(), 5)
            assert command_signed(payload, signature)
            quantity = json.loads(payload)["quantity"]
            assert quantity == HUGE and type(quantity) is int
            await engine.send_multipart([peer, request_id, json_compact({"status": 400, "echo": quantity})])
            return await call
        finally:
            engine.close(linger=0)

    with override_settings(ENGINE_TRANSPORT="zmq", ENGINE_SHARDS=f"all=*@{endpoint}", ENGINE_ANSWER_TIMEOUT_SECONDS=5):
        answer = async_to_sync(scenario)()
    assert answer == {"status": 400, "echo": HUGE} and type(answer["echo"]) is int
