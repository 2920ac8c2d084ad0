"""The web side of the transport for an ASGI worker's event loop (core.api.fast): the same
command, signature, endpoints, timeouts and 503 answers as orders.sequencer.zmq, but the
wait for the engine's answer does not hold a thread or block the loop, so one worker serves
its other requests meanwhile.

One DEALER socket per event loop and shard (orders.sequencer.zmq.shard_socket: with no engine
connected a send fails; it is retried for at most CONNECT_WAIT_MS, then a 503, never a hang). The socket is a
plain one, watched by the loop itself (`add_reader` on its file descriptor): whenever it may
have answers, one callback reads every answer waiting and hands each to the request waiting
for its id (a late answer of a request that timed out is dropped). A request's id is a
counter of the socket; its timeout a timer of the loop. zmq.asyncio's futures, a reader
task and asyncio.wait_for's task cost ~0.1-0.15 ms more of a web worker's CPU per answer
(docs/performance.md, "A cheaper round trip to the engine").
The in-process transport (tests, tools) runs in Django's thread for synchronous code, as
the synchronous path does."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import time
from typing import cast

import zmq
from asgiref.sync import sync_to_async
from django.conf import settings

from core.metrics import ENGINE_REQUEST_SECONDS
from orders.sequencer.commands import Answer, Command, answers_merge, command_message
from orders.sequencer.shards import Shard, shard_for, shards
from orders.sequencer.transport import engine_call
from orders.sequencer.zmq import CONNECT_WAIT_MS, _unavailable, shard_socket

# How often a send refused for want of a connected engine is tried again, up to CONNECT_WAIT_MS.
CONNECT_RETRY_S = 0.01


class ShardClient:
    """The requests of one event loop to one shard's engine."""

    def __init__(self, shard: Shard, *, loop: asyncio.AbstractEventLoop) -> None:
        socket = shard_socket(shard)
        self.socket = socket
        self.loop = loop
        self.waiting: dict[bytes, asyncio.Future[Answer]] = {}
        self._ids = itertools.count(1)
        # libzmq's descriptor is edge-triggered: readable means "look at ZMQ_EVENTS", so
        # _drain reads until no answer is left, and runs after each send too (a send may
        # take the signal of answers already queued).
        self._fd = cast(int, socket.getsockopt(zmq.FD))
        loop.add_reader(self._fd, self._drain)

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
        self.socket.close(linger=0)

    async def request(self, command: Command, *, timeout: float) -> Answer:
        request_id = next(self._ids).to_bytes(8, "big")
        message = command_message(request_id, command, timeout=timeout)
        began = time.perf_counter()
        try:
            if not self._send(message) and not await self._send_when_connected(message):
                return _unavailable()  # no engine connected within CONNECT_WAIT_MS
            return await self._answer(request_id, timeout=timeout)
        finally:
            ENGINE_REQUEST_SECONDS.observe(time.perf_counter() - began)  # back on this loop, answer in hand

    async def _answer(self, request_id: bytes, *, timeout: float) -> Answer:
        answer = self.loop.create_future()
        self.waiting[request_id] = answer
        timer = self.loop.call_later(timeout, _time_out, answer)
        try:
            return await answer
        finally:
            timer.cancel()
            self.waiting.pop(request_id, None)

    def _send(self, message: list[bytes]) -> bool:
        try:
            self.socket.send_multipart(message, zmq.NOBLOCK)
        except zmq.Again:
            return False
        if cast(int, self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self.loop.call_soon(self._drain)
        return True

    async def _send_when_connected(self, message: list[bytes]) -> bool:
        # Rare (a new socket still connecting, an engine starting): polled, not watched.
        deadline = self.loop.time() + CONNECT_WAIT_MS / 1000
        while self.loop.time() < deadline:
            await asyncio.sleep(CONNECT_RETRY_S)
            if self._send(message):
                return True
        return False

    def _drain(self) -> None:
        socket, waiting = self.socket, self.waiting
        while cast(int, socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                reply_id, payload = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            waiter = waiting.pop(reply_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(json.loads(payload))


def _time_out(answer: asyncio.Future[Answer]) -> None:
    if not answer.done():
        answer.set_result(_unavailable())


_clients: dict[tuple[int, int, str], ShardClient] = {}


def _client(shard: Shard) -> ShardClient:
    # Per process (a forked worker starts afresh) and per loop (a socket serves one loop).
    loop = asyncio.get_running_loop()
    key = (os.getpid(), id(loop), f"{shard.name}@{','.join(shard.endpoints)}")
    client = _clients.get(key)
    if client is None or client.loop is not loop:
        ended = [k for k, c in _clients.items() if k[0] == key[0] and c.loop.is_closed()]  # tests', tools' loops
        for stale in ended:
            _clients.pop(stale).close()
        client = _clients[key] = ShardClient(shard, loop=loop)
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
