"""The engine process of one shard (manage.py engine): load the books and keep them
current while standing by (orders.sequencer.standby), take over once it leads, then serve:
drain every command waiting on the socket (up to ENGINE_BATCH_MAX), run them as one batch,
answer each once the batch has committed. What arrives during a batch goes into the next;
that one may wait a little for the clients just answered (ENGINE_BATCH_LINGER_SECONDS,
6 ms by default).

Transport: ZeroMQ. The engine binds a ROUTER socket; web workers connect DEALER sockets
(orders.sequencer.zmq). Messages: [client identity, request id, JSON command, HMAC of the
command] in (anything not signed with the platform's key is dropped), [client identity,
request id, JSON answer] out."""

from __future__ import annotations

import faulthandler
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import zmq
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from core.encoding import json_compact
from core.metrics import ENGINE_COMMAND_SECONDS, ENGINE_COMMANDS_LATE, ENGINE_QUEUE_DEPTH
from orders.sequencer.commands import (
    ANSWER_BY,
    APPLY_BY,
    UNAPPLIED,
    Answer,
    Command,
    command_signed,
    deadline_past,
    expired_answer,
    unapplied_answer,
)
from orders.sequencer.leadership import Leadership
from orders.sequencer.loop import Sequencer
from orders.sequencer.recovery import heap_settle
from orders.sequencer.shards import Shard, symbols_of_other_shards
from orders.sequencer.standby import CatchUp, WarmStandby
from orders.streams.publish import BOOK_SNAPSHOT, book_snapshot
from orders.streams.relay import relay_lead, relay_publisher_start

logger = logging.getLogger("orders.sequencer.server")
PING = "ping"
CATCH_UP_SECONDS = 0.5  # a standby's books trail the database by about this much
LEADERSHIP_POLL_SECONDS = 0.1
# How often a leader checks that its lock's session lives: a statement on that session,
# which also tells standbys that it still comes round its loop (leadership, "silent").
LEADERSHIP_CHECK_SECONDS = 0.5
SLOW_BATCH_SECONDS = 0.5
# How long a closing socket may still send the answers queued in it.
CLOSE_LINGER_MS = 1000
STOPPING = "The matching engine is stopping; this command was not applied. Please retry."
# A command read off the socket: its client's identity, the request id, the command, and
# when it was read (monotonic: its time in the engine is measured to its answer).
Received = tuple[bytes, bytes, dict[str, object], float]
# Before a batch, the database connection is checked (close_old_connections: with
# CONN_HEALTH_CHECKS a `SELECT 1` round trip) only when it was idle this long, or when a
# statement failed on it since: back to back, the batch's own first statement shows soon
# enough that it is gone (that batch answers 503 with Retry-After, the next one reconnects),
# and a check per batch was one of its dozen round trips.
CONNECTION_CHECK_IDLE_SECONDS = 1.0


@dataclass
class EngineStats:
    started_at: float = field(default_factory=time.monotonic)
    leader_since: float | None = None
    load_seconds: float | None = None
    live_orders: int = 0
    takeover: CatchUp = field(default_factory=lambda: CatchUp(orders=0, seconds=0.0))  # the last before leading
    batches: int = 0
    commands: int = 0
    batch_seconds: list[float] = field(default_factory=list)  # the last 10,000

    def batch(self, seconds: float, size: int) -> None:
        self.batches += 1
        self.commands += size
        self.batch_seconds.append(seconds)
        if len(self.batch_seconds) > 10_000:
            del self.batch_seconds[:5_000]


class EngineServer:
    def __init__(
        self,
        *,
        shard: Shard,
        bind: str | None = None,
        announce: Callable[[str], None] | None = None,
        freeze_loaded: bool = False,
        watchdog: Watchdog | None = None,
    ) -> None:
        """`freeze_loaded`: the process is the engine's own (manage.py engine): once its
        books are loaded, they are moved out of the cyclic collector's reach (heap_settle),
        which a process shared with other work (a test run) should not do to its heap.
        `watchdog`: the engine's own process too: ended when its leading loop hangs."""
        self.shard = shard
        self.freeze_loaded = freeze_loaded
        self.watchdog = watchdog
        self.announce = announce or logger.info
        self.bind = bind
        # Where it serves once leading (_bound): `bind`, else the first of the shard's
        # endpoints it could bind; until then, where it will try first.
        self.endpoint = bind or shard.endpoints[0]
        self.leadership = Leadership(shard.name)
        self.stats = EngineStats()
        self.stopping = threading.Event()
        self._announcer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-announcer")
        # What follows a commit (metrics, lifecycle lines, the post-trade task, the streams'
        # message), held until the batch's answers are sent (_answer): started at once, that
        # thread took the GIL while the answers waited for it (docs/performance.md).
        self._announcements: list[Callable[[], None]] = []
        self._batch_ended = 0.0  # monotonic end of the last batch (0: none yet, check first)
        self._pending: list[Received] = []  # arrived during the last batch
        self._wanted = 0  # the next batch waits (a little) for this many commands
        # The clients of the batches not answered yet (Sequencer.run), by id() of their commands.
        self._waiting: dict[int, list[Received]] = {}

    def run(self) -> None:
        """Stand by (books loaded and kept current) until leading, then serve until stopped
        or leadership is lost."""
        while not self.stopping.is_set():
            standby = self._stand_by()
            if standby is None:
                continue
            try:
                self._lead(standby.sequencer)
            finally:
                self.leadership.release()

    def _sequencer_new(self) -> Sequencer:
        return Sequencer(
            symbols=self.shard.markets or None,
            excluded=symbols_of_other_shards(self.shard),
            announce=self._announcements.append,  # after each commit, off the batch loop (_answer)
        )

    def _stand_by(self) -> WarmStandby | None:
        """Load the books while another engine leads, keep them current (every
        CATCH_UP_SECONDS), try for leadership meanwhile; once leading, catch up one last
        time and return. None when stopped, or when standing by failed (then it starts
        again from a fresh load: the database is the truth)."""
        began = time.monotonic()
        standby = WarmStandby(self._sequencer_new())
        try:
            self.stats.live_orders = standby.load()
            if self.freeze_loaded:
                heap_settle()
            self.stats.load_seconds = time.monotonic() - began
            self.announce(
                f"engine {self.shard.name} standing by: {self.stats.live_orders} live orders "
                f"loaded in {self.stats.load_seconds:.2f} s, kept current"
            )
            caught = time.monotonic()
            while not self.stopping.is_set():
                if self.leadership.acquire():
                    # Every batch from now on checks first that this engine still leads
                    # (orders.sequencer.leadership, "Fencing").
                    standby.sequencer.fence = self.leadership.fence()
                    self.stats.takeover = standby.catch_up()
                    # No batch earlier than the trades the engine before wrote (its clock
                    # may have run ahead of this host's): orders.sequencer.loop.EngineClock.
                    standby.sequencer.clock_seed()
                    self.stats.live_orders = standby.live_orders
                    return standby
                if time.monotonic() - caught >= CATCH_UP_SECONDS:
                    caught = time.monotonic()
                    close_old_connections()  # a connection the database dropped is replaced
                    try:
                        standby.catch_up()
                    except DatabaseError as exc:  # the same changes are read again next time
                        logger.warning("engine %s: catch-up postponed: %s", self.shard.name, exc)
                self.stopping.wait(LEADERSHIP_POLL_SECONDS)
        except Exception:
            logger.exception("engine %s: standing by failed; loading again", self.shard.name)
            self.leadership.release()
            close_old_connections()
            self.stopping.wait(1.0)
        return None

    def _lead(self, sequencer: Sequencer) -> None:
        self.stats.leader_since = time.monotonic()
        self._pending, self._wanted, self._batch_ended = [], 0, 0.0  # the first batch checks the connection
        socket = self._bound()
        relay_lead(shard=self.shard.name)  # its batches name the shard: a new leader's first is a gap
        relay_publisher_start(fresh=True)  # streams: bound by the leader only, before its first batch
        takeover = self.stats.takeover
        self.announce(
            f"engine {self.shard.name} leading on {self.endpoint}: {self.stats.live_orders} live orders "
            f"(loaded in {self.stats.load_seconds:.2f} s standing by; "
            f"{takeover.orders} changed orders caught up in {takeover.seconds:.3f} s)"
        )
        checked = time.monotonic()
        try:
            while not self.stopping.is_set():
                if self.watchdog is not None:
                    self.watchdog.pet()
                # A batch on its way (run_overlapped) lands at once when nothing else waits.
                if self._pending or socket.poll(0 if sequencer.in_flight else 100):
                    self._serve(socket, sequencer)
                elif sequencer.in_flight:
                    self._answer(socket, sequencer.flush())
                if time.monotonic() - checked > LEADERSHIP_CHECK_SECONDS:
                    checked = time.monotonic()
                    if not self.leadership.held():
                        logger.warning("engine %s lost leadership; standing by", self.shard.name)
                        return
        finally:
            try:
                self._answer(socket, sequencer.flush())
                self._refuse_waiting(socket, sequencer)
            finally:
                # The last answers are still in the socket's queue: closed without a linger,
                # they were dropped, and their clients had a 503 for orders placed.
                socket.close(linger=CLOSE_LINGER_MS)
                if self.watchdog is not None:
                    self.watchdog.stop()
                # No longer leading, no queue: a standby's depth is not its last batch's.
                ENGINE_QUEUE_DEPTH.set(0)

    def _bound(self) -> zmq.Socket[bytes]:
        """The leader's socket, bound to `bind`, else to the first of the shard's endpoints
        that binds here. Every engine of a shard is started alike (no --bind: the Procfile,
        the systemd unit), and each bound the shard's first endpoint: on another host that is
        not an address of its own, and on the same host the engine before it, fenced, may
        still hold it for up to LEADERSHIP_CHECK_SECONDS; the standby that took over then
        died of the bind instead of leading. Web workers connect to every endpoint."""
        socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        endpoints = [self.bind] if self.bind else list(self.shard.endpoints)
        for endpoint in endpoints:
            try:
                socket.bind(endpoint)
            except zmq.ZMQError as exc:
                if endpoint == endpoints[-1]:
                    socket.close()
                    raise
                logger.warning(
                    "engine %s: cannot bind %s (%s); trying the next endpoint", self.shard.name, endpoint, exc
                )
                continue
            self.endpoint = endpoint
            break
        return socket

    def _serve(self, socket: zmq.Socket[bytes], sequencer: Sequencer) -> None:
        received, self._pending = self._pending, []
        self._receive(socket, sequencer, received)
        # Group commit: a batch costs a dozen round trips to the database whatever its size,
        # so a few more commands in it cost little, and a command left out waits for a whole
        # batch. With ENGINE_BATCH_LINGER_SECONDS (0: off) the batch waits for the clients
        # the last one answered, at most that long after it ended (an engine idle that long
        # starts at once), as PostgreSQL's commit_delay does: clients that come back within
        # it share the batch instead of taking turns in two (a third fewer batches under
        # the bench's 8 clients: docs/performance.md).
        wanted = min(self._wanted, settings.ENGINE_BATCH_MAX)
        deadline = self._batch_ended + settings.ENGINE_BATCH_LINGER_SECONDS
        while received and len(received) < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not socket.poll(math.ceil(remaining * 1000)):
                break
            self._receive(socket, sequencer, received)
        received = self._unexpired(socket, received)
        if not received:
            return
        began = time.monotonic()
        if not sequencer.in_flight and (
            began - self._batch_ended > CONNECTION_CHECK_IDLE_SECONDS or _errors_occurred()
        ):
            close_old_connections()  # a connection the database dropped is replaced, not reused
        commands = [command for _, _, command, _ in received]
        # A large batch is answered when it lands: after the next batch was applied, or at
        # once when nothing else waits (_lead); a small one at once (Sequencer.run).
        self._waiting[id(commands)] = received
        self._answer(socket, sequencer.run(commands))
        self._batch_ended = time.monotonic()
        took = self._batch_ended - began
        self.stats.batch(took, len(received))
        if took > SLOW_BATCH_SECONDS:
            logger.warning("slow batch: %s commands in %.3f s", len(received), took)
        # What came in during the batch goes into the next one, with the clients just answered.
        self._receive(socket, sequencer, self._pending)
        self._wanted = len(self._pending) + len(received)

    def _refuse_waiting(self, socket: zmq.Socket[bytes], sequencer: Sequencer) -> None:
        """Leaving the lead (stopping, or leadership lost): the commands that arrived and
        will not be applied here are answered 503 at once, rather than after their
        senders' whole wait."""
        waiting, self._pending = self._pending, []
        self._receive(socket, sequencer, waiting)
        if waiting:
            refused = json_compact(unapplied_answer(STOPPING))
            for identity, request_id, _, _ in waiting:
                socket.send_multipart([identity, request_id, refused])
            logger.info(
                "engine %s: %s waiting commands answered 503 on leaving the lead", self.shard.name, len(waiting)
            )

    def _unexpired(self, socket: zmq.Socket[bytes], received: list[Received]) -> list[Received]:
        """The commands still to apply: one whose sender's wait is (nearly) over (its
        `apply_by` passed: this engine was paused, stalled or just took over) is answered 503
        unapplied, so that a client's 503 does not hide an order carried out behind its back
        (orders.sequencer.commands.APPLY_SHARE)."""
        now = time.time()
        expired = [item for item in received if deadline_past(item[2], APPLY_BY, now) > 0]
        if not expired:
            return received
        # Counted and logged before the answers go: whoever has an answer finds it counted.
        ENGINE_COMMANDS_LATE.labels(outcome="expired").inc(len(expired))
        oldest = max(deadline_past(command, APPLY_BY, now) for _, _, command, _ in expired)
        logger.warning(
            "engine %s: %s commands not applied, their senders' wait over (the oldest %.3f s past its "
            "apply_by): the engine was paused or stalled, or its clock runs ahead of the web hosts'",
            self.shard.name,
            len(expired),
            oldest,
        )
        unapplied = json_compact(expired_answer())
        for identity, request_id, _, _ in expired:
            socket.send_multipart([identity, request_id, unapplied])
        return [item for item in received if deadline_past(item[2], APPLY_BY, now) <= 0]

    def _answer(
        self,
        socket: zmq.Socket[bytes],
        finished: list[tuple[list[Command], list[Answer]]],
    ) -> None:
        """Send the answers of the batches that landed, each to its client; then what
        followed their commits goes to the announcer thread."""
        for commands, answers in finished:
            clients = self._waiting.pop(id(commands))
            for (identity, request_id, _, _), answer in zip(clients, answers, strict=True):
                socket.send_multipart([identity, request_id, json_compact(answer)])
            sent = time.monotonic()
            for _, _, _, read in clients:
                ENGINE_COMMAND_SECONDS.observe(sent - read)
            self._late_report(clients, answers)
        self._announce()

    def _late_report(self, clients: list[Received], answers: list[Answer]) -> None:
        """Answers sent after their senders gave up (`answer_by`) for commands that were
        carried out: a batch that would commit after that is rolled back first
        (orders.sequencer.loop), so only a COMMIT that itself took the rest of the wait gets
        here. Their clients had a 503: logged with what was done, for support to tell them."""
        now = time.time()
        for (_, _, command, _), answer in zip(clients, answers, strict=True):
            late = deadline_past(command, ANSWER_BY, now)
            if late > 0 and not answer.get(UNAPPLIED):
                ENGINE_COMMANDS_LATE.labels(outcome="answered_late").inc()
                logger.warning(
                    "engine %s: a %s answered %.3f s after its sender gave up (its client had a 503): %s",
                    self.shard.name,
                    command.get("op"),
                    late,
                    _late_summary(command, answer),
                )

    def _announce(self) -> None:
        """Hand what followed the commits answered so far to the announcer thread, in one
        hand-over, each piece run in turn (`announced`)."""
        if self._announcements:
            work = list(self._announcements)  # the sequencer appends to this very list
            self._announcements.clear()
            self._announcer.submit(announced, work)

    def _receive(self, socket: zmq.Socket[bytes], sequencer: Sequencer, received: list[Received]) -> None:
        """The commands waiting on the socket, appended to `received` (up to ENGINE_BATCH_MAX);
        pings and book snapshots answered at once."""
        while len(received) < settings.ENGINE_BATCH_MAX:
            try:
                identity, request_id, payload, signature = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except ValueError:
                logger.warning("engine %s: a message of the wrong shape dropped", self.shard.name)
                continue
            if not command_signed(payload, signature):
                logger.warning("engine %s: an unsigned or forged command dropped", self.shard.name)
                continue
            try:
                command = json.loads(payload)  # not orjson: a client's amount may be an integer past 64 bits
            except ValueError:
                continue
            if command.get("op") == PING:
                socket.send_multipart([identity, request_id, json_compact(self.health(sequencer=sequencer))])
                continue
            if command.get("op") == BOOK_SNAPSHOT:  # streams: the book between two batches
                self._answer(socket, sequencer.flush())  # committed, not a batch on its way
                market = sequencer._market(symbol=str(command.get("market")))
                snapshot = book_snapshot(market, top=command.get("top") is True)
                socket.send_multipart([identity, request_id, json_compact(snapshot)])
                continue
            received.append((identity, request_id, command, time.monotonic()))

    def health(self, *, sequencer: Sequencer) -> dict[str, object]:
        """What /healthz shows of this engine; `live_orders` as its books hold them now (the
        count loaded at start, never updated, read 0 on a fresh platform with orders resting)."""
        return {
            "status": 200,
            "shard": self.shard.name,
            "leader_since_s": None
            if self.stats.leader_since is None
            else round(time.monotonic() - self.stats.leader_since, 3),
            "live_orders": sequencer.live_orders,
            "load_s": self.stats.load_seconds,
            "takeover_catch_up_s": round(self.stats.takeover.seconds, 3),
            "batches": self.stats.batches,
            "commands": self.stats.commands,
            "clock": time.time(),  # the web side reports its offset (commands carry wall-clock deadlines)
        }


class Watchdog:
    """Ends the process when `pet` has not been called for `seconds`: every thread's
    traceback to stderr (the engine's log), then exit status 1, for the supervisor to
    restart it (systemd's Restart=, scripts/serve). faulthandler's timer runs on a thread of
    its own that needs no interpreter lock, so a loop hung holding it (a C call, a lock, a
    bug) is ended too. A frozen process (SIGSTOP, a paused VM) freezes its watchdog as well:
    that one a standby takes over (orders.sequencer.leadership)."""

    PET_EVERY_SECONDS = 0.5  # re-arming starts a thread: not at every turn of the loop

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._petted = -math.inf

    def pet(self) -> None:
        now = time.monotonic()
        if now - self._petted >= self.PET_EVERY_SECONDS:
            self._petted = now
            faulthandler.dump_traceback_later(self.seconds, exit=True, file=sys.stderr)

    def stop(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        self._petted = -math.inf


def _late_summary(command: dict[str, object], answer: Answer) -> str:
    """Who and what, for support: the user, the request's correlation id, the outcome."""
    said = f"user {command.get('user_id')}, request {command.get('correlation_id', '-')}, status {answer.get('status')}"
    order = answer.get("order")
    if isinstance(order, dict):
        return f"{said}, order {order.get('id')} {order.get('status')}"
    if "order_ids" in answer:
        return f"{said}, orders {answer['order_ids']}"
    return said


def announced(work: list[Callable[[], None]]) -> None:
    """On the announcer thread: each in turn. One that fails is logged and the rest run (a
    future's exception, unread, would have been lost). The thread's own database connection
    is checked first, as the batch loop checks its own: one the database ended (a failed
    statement marked it) is replaced, never reused for the life of the process."""
    close_old_connections()
    for item in work:
        try:
            item()
        except Exception:
            logger.exception("work after a commit failed")


def _errors_occurred() -> bool:
    return any(connection.errors_occurred for connection in connections.all(initialized_only=True))
