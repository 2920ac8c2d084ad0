"""5. The matching engine alone (docs/performance.md):

- engine_orders_per_s, engine_batch_p99_ms: the sequencer in this process, the load's
  command mix sent in batches of `batch`, every batch persisted to PostgreSQL in one
  transaction (no HTTP, no web worker);
- engine_start_s, engine_rss_mb: `manage.py engine` for a market holding `resting` orders
  and `stops` pending stops: seconds from process start until it leads (Django start, the
  books loaded, socket bound), and its peak RSS;
- failover_s: an active and a standby engine process of one shard, commands flowing over
  ZeroMQ, the standby warm (its books loaded, kept current); the active one SIGKILLed:
  seconds until a command sent after the kill is answered 2xx by the standby."""

from __future__ import annotations

import cProfile
import gc
import os
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import connection

from bench.infra import BenchError, EngineProcess, cpu_seconds, log, vm_hwm_mb
from bench.seed import seed_pending_stops, seed_resting_orders
from orders.models import Market
from orders.sequencer.commands import cancel_command, place_command
from orders.sequencer.loop import Sequencer
from orders.sequencer.recovery import heap_settle
from orders.sequencer.shards import shards
from orders.sequencer.transport import in_process_engine_reset
from orders.sequencer.zmq import zmq_engine_call

FAILOVER_SENDERS = 4
FAILOVER_PACE_S = 0.1


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def _commands(
    users: list[int], count: int, rnd: random.Random, live: dict[int, list[tuple[int, int]]]
) -> list[dict[str, Any]]:
    """The load's mix: 60% limit GTC around the reference, 20% market IOC, 10% limit FOK,
    10% cancels of the user's newest resting order."""
    commands = []
    for _ in range(count):
        user = rnd.choice(users)
        roll = rnd.random()
        if roll < 0.1 and live.get(user):
            order_id, market_id = live[user].pop()
            commands.append(cancel_command(user_id=user, order_id=order_id, market_id=market_id))
            continue
        side = rnd.choice(("buy", "sell"))
        ticks = rnd.randint(-300, 300)
        price = f"{2000 + ticks / 100:.2f}"
        if roll < 0.7:
            fields = {"type": "limit", "price": price, "time_in_force": "GTC"}
        elif roll < 0.9:
            fields = {"type": "market", "time_in_force": "IOC"}
        else:
            fields = {"type": "limit", "price": price, "time_in_force": "FOK"}
        commands.append(
            place_command(
                user_id=user,
                fields={"market": "ETH-USDT", "side": side, "quantity": f"0.{rnd.randint(1, 20):04d}", **fields},
                correlation_id=f"{rnd.getrandbits(128):032x}",  # as the web sends its request's
            )
        )
    return commands


def _tally(
    finished: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    *,
    statuses: dict[int, int],
    live: dict[int, list[tuple[int, int]]],
    market_id: int,
) -> int:
    answered = 0
    for chunk, answers in finished:
        for command, answer in zip(chunk, answers, strict=True):
            statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1
            answered += 1
            order = answer.get("order")
            if order and order["status"] in ("open", "partially_filled"):
                live.setdefault(command["user_id"], []).append((int(order["id"]), market_id))
    return answered


def run_engine_throughput(*, traders: list[str], commands: int, batch: int) -> dict[str, Any]:
    users = list(User.objects.filter(username__in=traders).values_list("pk", flat=True))
    rnd = random.Random(5)
    # As in the engine process (orders.sequencer.server): what follows a commit (metrics,
    # the trades_committed signal and its task publish) runs on a thread of its own.
    announcer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-announcer")
    sequencer = Sequencer(symbols={"ETH-USDT"}, announce=announcer.submit)
    sequencer.load()
    threshold = gc.get_threshold()
    heap_settle()  # as the engine process does once its books are loaded (its collector's threshold too)
    live: dict[int, list[tuple[int, int]]] = {}
    durations: list[float] = []
    answered = 0
    statuses: dict[int, int] = {}
    # BENCH_CPROFILE=path: a cProfile of the batches (pstats file, path + ".engine"); the
    # figures of such a run are the profiler's, not the engine's.
    profile_path = os.environ.get("BENCH_CPROFILE")
    profiler = cProfile.Profile() if profile_path else None
    backend = _backend_pid()
    backend_began = cpu_seconds(backend) if backend else 0.0
    cpu_began = time.process_time()
    batch_cpu = 0.0  # the sequencer thread's own CPU in run_batch (not the announcer's or the stream relay's)
    began = time.perf_counter()
    for _ in range(max(commands // batch, 1)):
        chunk = _commands(users, batch, rnd, live)
        started = time.perf_counter()
        thread_began = time.thread_time()
        if profiler is not None:
            profiler.enable()
        finished = sequencer.run(chunk)  # as the engine process runs a batch
        if profiler is not None:
            profiler.disable()
        batch_cpu += time.thread_time() - thread_began
        durations.append(time.perf_counter() - started)
        answered += _tally(finished, statuses=statuses, live=live, market_id=sequencer.markets[0].spec.id)
    thread_began = time.thread_time()
    answered += _tally(sequencer.flush(), statuses=statuses, live=live, market_id=sequencer.markets[0].spec.id)
    batch_cpu += time.thread_time() - thread_began
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    # PostgreSQL's own CPU for the batches: the sequencer's connection's server process
    # (the bench runs on a local server only: bench.infra.PgServer).
    backend_cpu = cpu_seconds(backend) - backend_began if backend else 0.0
    announcer.shutdown(wait=True)
    gc.set_threshold(*threshold)  # the bench's later parts: the collector as it was
    if profiler is not None and profile_path:
        profiler.dump_stats(f"{profile_path}.engine")
    log(
        f"engine alone: {answered} commands in {elapsed:.2f} s ({1000 * cpu / max(answered, 1):.3f} ms CPU each, "
        f"generating them included; {1000 * batch_cpu / max(answered, 1):.3f} ms of it the sequencer thread's "
        f"in run_batch; PostgreSQL's server process {1000 * backend_cpu / max(answered, 1):.3f} ms), "
        f"batches of {batch}, answers {statuses}"
        + f"; {sequencer.ahead_applied} batches applied ahead of the commit before them, "
        f"{sequencer.ahead_again} of them applied again"
    )
    return {
        "engine_orders_per_s": answered / elapsed if elapsed else 0.0,
        "engine_batch_p50_ms": 1000 * _percentile(durations, 0.5),
        "engine_batch_p99_ms": 1000 * _percentile(durations, 0.99),
        "engine_batch_size": batch,
        "engine_commands": answered,
        "engine_cpu_ms_per_command": 1000 * cpu / max(answered, 1),
        "engine_batch_cpu_ms_per_command": 1000 * batch_cpu / max(answered, 1),
        "engine_pg_cpu_ms_per_command": 1000 * backend_cpu / max(answered, 1),
        "engine_non_2xx": sum(count for status, count in statuses.items() if status >= 300),
    }


def _backend_pid() -> int | None:
    """The process id of this connection's PostgreSQL server process (None elsewhere)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    return int(row[0]) if row else None


def run_engine_start(
    *, env: dict[str, str], workdir: Path, resting: int, stops: int, makers: list[int]
) -> dict[str, Any]:

    market = Market.objects.get(symbol="ENG-USDT")
    seed_resting_orders(market=market, maker_ids=makers, first=0, count=resting)
    seed_pending_stops(market=market, maker_ids=makers, count=stops)
    engine_env = {**env, "ENGINE_SHARDS": f"eng=ENG-USDT@ipc://{workdir}/engine-start.sock"}
    engine = EngineProcess(env=engine_env, log_path=workdir / "engine-start.log", shard="eng")
    began = time.monotonic()
    engine.start(wait=False)
    try:
        start_s = engine.wait_leading(timeout=120)
        rss = vm_hwm_mb(engine.pid)
    finally:
        engine.stop()
    log(f"engine start: {resting:,} resting + {stops:,} stops led after {start_s:.2f} s, peak RSS {rss:.1f} MB")
    return {
        "engine_start_s": start_s,
        "engine_rss_mb": rss,
        "engine_start_resting": resting,
        "engine_start_stops": stops,
        "engine_start_wall_s": time.monotonic() - began,
    }


def run_failover(*, env: dict[str, str], workdir: Path, traders: list[str]) -> dict[str, Any]:
    """Two engine processes of the default shard (every market), FAILOVER_SENDERS threads
    placing resting limit orders over ZeroMQ, the active engine SIGKILLed."""
    in_process_engine_reset()  # this process's own sequencer must not hold the books meanwhile
    users = list(User.objects.filter(username__in=traders).values_list("pk", flat=True))
    active = EngineProcess(env=env, log_path=workdir / "engine-a.log").start()
    standby_log = workdir / "engine-b.log"
    offset = standby_log.stat().st_size if standby_log.exists() else 0  # this run's lines only
    standby = EngineProcess(env=env, log_path=standby_log).start(wait=False)
    stop = threading.Event()
    answers: list[tuple[float, float, int]] = []  # sent, answered, status

    def send(index: int) -> None:
        rnd = random.Random(9 + index)
        while not stop.is_set():
            command = place_command(
                user_id=rnd.choice(users),
                fields={
                    "market": "ETH-USDT",
                    "side": "buy",
                    "type": "limit",
                    "quantity": "0.0010",
                    "price": f"{1000 + rnd.randint(0, 100) / 100:.2f}",
                },
            )
            sent = time.monotonic()
            answer = zmq_engine_call(command, market="ETH-USDT")
            answers.append((sent, time.monotonic(), int(answer["status"])))
            # Paced: a command in flight at the kill is lost with the engine and waits out
            # ENGINE_ANSWER_TIMEOUT_SECONDS; a sender between two commands sends the next
            # one within PACE of the kill, which the standby answers once it has taken over.
            time.sleep(FAILOVER_PACE_S)

    senders = [
        threading.Thread(target=send, args=(index,), name=f"failover-sender-{index}", daemon=True)
        for index in range(FAILOVER_SENDERS)
    ]
    for sender in senders:
        sender.start()
    try:
        deadline = time.monotonic() + 30
        while len(answers) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        # A standby that has loaded the books (orders.sequencer.standby) while commands flow.
        warm, loaded = _standby_warm(standby_log, offset=offset, timeout=120)
        killed, killed_at = time.monotonic(), time.time()
        active.kill()
        deadline = killed + 30
        answered = None
        while answered is None and time.monotonic() < deadline:
            answered = min((done for sent, done, status in answers if sent > killed and status < 300), default=None)
            time.sleep(0.02)
    finally:
        stop.set()
        for sender in senders:
            sender.join(timeout=10)
        active.stop()
        standby.stop()
    failover = (answered - killed) if answered is not None else float("inf")
    leading = _leading_at(standby_log, offset=offset) - killed_at
    after_kill = Counter(status for sent, _, status in answers if sent > killed)
    timeline = [
        (round(sent - killed, 2), round(done - killed, 2), status)
        for sent, done, status in sorted(answers)
        if done > killed
    ][:12]
    log(
        f"failover: the standby led {leading:.2f} s and answered {failover:.2f} s after the active engine was "
        f"killed (commands sent since: {dict(after_kill)}; sent, answered, status: {timeline}); standby: {warm}"
    )
    return {
        "failover_s": failover,
        "failover_leading_s": leading,
        "failover_commands": len(answers),
        "failover_shards": len(shards()),
        "failover_live_orders": loaded,
    }


_STANDING_BY = re.compile(rb"standing by: (\d+) live orders loaded in [\d.]+ s")


def _leading_at(log_path: Path, *, offset: int) -> float:
    """When the engine logged that it leads (its log's wall-clock timestamp)."""
    for line in log_path.read_bytes()[offset:].splitlines():
        if EngineProcess.READY in line:
            return datetime.strptime(line[:23].decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007  (local, as logged)
    return float("inf")


def _standby_warm(log_path: Path, *, offset: int, timeout: float) -> tuple[str, int]:
    """Wait until the standby has loaded the books: its log line, the live orders loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _STANDING_BY.search(log_path.read_bytes()[offset:])
        if found:
            return found.group(0).decode(), int(found.group(1))
        time.sleep(0.05)
    raise BenchError(f"the standby did not load its books within {timeout:g} s; see {log_path}")
