"""How a web worker sends a command to the engine that owns its market and waits for the
answer. ENGINE_TRANSPORT selects:

- "inprocess": the sequencer runs in the calling process, one command at a time under a
  lock, in the caller's database connection. For tests and single-process tools only:
  two processes would each hold a book.
- "zmq": the engine processes (manage.py engine) own the books; orders.sequencer.zmq."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from orders.sequencer.commands import Answer, Command
from orders.sequencer.loop import Sequencer
from orders.sequencer.zmq import engines_health, zmq_engine_call
from orders.streams.publish import BOOK_SNAPSHOT, book_snapshot


class InProcessEngine:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sequencer: Sequencer | None = None

    def call(self, command: Command) -> Answer:
        with self._lock:
            if self._sequencer is None:
                self._sequencer = Sequencer()
            if command.get("op") == BOOK_SNAPSHOT:
                market = self._sequencer._market(symbol=str(command.get("market")))
                return book_snapshot(market, top=command.get("top") is True)
            return self._sequencer.run_batch([command])[0]

    def reset(self) -> None:
        """Forget the books (tests: every test starts from its own database)."""
        with self._lock:
            self._sequencer = None


_in_process = InProcessEngine()


def engine_call(command: Command, *, market: str | None = None) -> Answer:
    """Send `command` to the engine of `market` (None: every engine, answers merged by the
    caller) and wait for its answer; 503 answers when no engine answers in time."""
    if settings.ENGINE_TRANSPORT == "inprocess":
        return _in_process.call(command)
    return zmq_engine_call(command, market=market)


def engines_report() -> dict[str, Any]:
    """For /healthz: each engine, or the in-process one."""
    if settings.ENGINE_TRANSPORT == "inprocess":
        return {"inprocess": "ok"}
    return engines_health()


def in_process_engine_reset() -> None:
    _in_process.reset()
