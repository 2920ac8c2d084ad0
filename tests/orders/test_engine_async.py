"""orders.services.engine_async: the ZeroMQ round trip awaited on the event loop. Commands
sent while others wait (the loop is not blocked by a wait), answers matched by request id
whatever their order, signed as the synchronous transport signs them; no engine: 503."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import zmq
import zmq.asyncio
from asgiref.sync import async_to_sync
from django.test import override_settings

from orders.sequencer.commands import command_signed
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
