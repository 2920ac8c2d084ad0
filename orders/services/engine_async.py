"""The web side of the transport for an ASGI worker's event loop (core.api.fast): the same
command, signature, endpoints, timeouts and 503 answers as orders.sequencer.zmq, but the
wait for the engine's answer does not hold a thread or block the loop, so one worker serves
its other requests meanwhile.

One DEALER socket per event loop and shard (ZMQ_IMMEDIATE, and a send timeout of
CONNECT_WAIT_MS: with no engine connected the send fails, a 503, never a hang); one task
per socket reads the answers and hands each to the request waiting for its id (a late
answer of a request that timed out is dropped). The in-process transport (tests, tools)
runs in Django's thread for synchronous code, as the synchronous path does."""

from __future__ import annotations

import asyncio
import functools
import json
import os

import zmq
import zmq.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings

from orders.sequencer.commands import Answer, Command, answers_merge, command_signature
from orders.sequencer.shards import Shard, shard_for, shards
from orders.sequencer.transport import engine_call
from orders.sequencer.zmq import CONNECT_WAIT_MS, _unavailable


class ShardClient:
    """The requests of one event loop to one shard's engine."""

    def __init__(self, shard: Shard) -> None:
        socket = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.IMMEDIATE, 1)
        socket.setsockopt(zmq.SNDTIMEO, CONNECT_WAIT_MS)
        for endpoint in shard.endpoints:
            socket.connect(endpoint)
        self.socket = socket
        self.waiting: dict[bytes, asyncio.Future[Answer]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def request(self, command: Command, *, timeout: float) -> Answer:
        request_id = os.urandom(8)
        payload = json.dumps(command).encode()
        try:
            await self.socket.send_multipart([request_id, payload, command_signature(payload)])
        except zmq.Again:  # no engine connected within CONNECT_WAIT_MS
            return _unavailable()
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = answer
        if self.reader is None or self.reader.done():
            self.reader = asyncio.create_task(self._read())
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            return _unavailable()
        finally:
            self.waiting.pop(request_id, None)

    async def _read(self) -> None:
        while self.waiting:
            reply_id, payload = await self.socket.recv_multipart()
            waiter = self.waiting.pop(reply_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(json.loads(payload))


_clients: dict[tuple[int, int, str], ShardClient] = {}


def _client(shard: Shard) -> ShardClient:
    # Per process (a forked worker starts afresh) and per loop (a socket serves one loop).
    key = (os.getpid(), id(asyncio.get_running_loop()), f"{shard.name}@{','.join(shard.endpoints)}")
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = ShardClient(shard)
    return client


@functools.lru_cache(maxsize=1024)
def _shard_of(shards_text: str, market: str) -> Shard:
    # shard_for parses ENGINE_SHARDS at each call; keyed by that text, a change is seen.
    return shard_for(market)


@functools.lru_cache(maxsize=8)
def _every_shard(shards_text: str) -> tuple[Shard, ...]:
    return tuple(shards())


async def engine_call_async(command: Command, *, market: str | None) -> Answer:
    """orders.sequencer.transport.engine_call, awaited: to `market`'s engine, or (None) to
    every shard's at once, their answers merged (orders.sequencer.commands.answers_merge)."""
    if settings.ENGINE_TRANSPORT != "zmq":
        answer: Answer = await sync_to_async(engine_call)(command, market=market)
        return answer
    timeout = settings.ENGINE_ANSWER_TIMEOUT_SECONDS
    if market is not None:
        return await _client(_shard_of(settings.ENGINE_SHARDS, market)).request(command, timeout=timeout)
    every = _every_shard(settings.ENGINE_SHARDS)
    if len(every) == 1:
        return await _client(every[0]).request(command, timeout=timeout)
    answers = await asyncio.gather(*(_client(shard).request(command, timeout=timeout) for shard in every))
    return answers_merge(command, list(answers))
