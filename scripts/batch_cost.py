"""The sequencer's cost per batch (docs/performance.md, "The per-batch fixed cost").

The sequencer in this process, as `manage.py engine` runs it (what follows a commit on an
announcer thread of its own), against the PostgreSQL database of DATABASE_URL (migrated
and seeded as the bench seeds: ETH-USDT, traders funded, no TTX asset). Batches of each
size in --sizes, taking turns, the API load's command mix (bench.engine: 60% limit GTC,
20% market IOC, 10% FOK, 10% cancels), commands marked `check_user` as the web's hot path
sends them. Printed per size: the sequencer thread's CPU and wall per batch (median and
mean), the announcer thread's CPU per batch, the statements per batch (every statement
Django sends on the sequencer's connection, COMMIT included; BEGIN, queued on the first
statement's own cursor by the batch's transaction, not), of which sent on their own (a
round trip each), the pipelines entered (a round trip each, one more per read inside one),
and the CPU of the connection's PostgreSQL server process per batch (a server on this
machine).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/platform_hX \\
        DJANGO_SETTINGS_MODULE=config.settings.production-like ... \\
        .venv/bin/python scripts/batch_cost.py --batches 200 --sizes 1 4
"""

from __future__ import annotations

import argparse
import cProfile
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="measured batches per size")
    parser.add_argument("--warmup", type=int, default=30, help="batches per size before measuring")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--traders", type=int, default=16)
    parser.add_argument(
        "--via",
        choices=["run", "run_batch"],
        default="run",
        help="Sequencer.run (as the engine server calls it) or run_batch (one batch at a time, classic)",
    )
    parser.add_argument("--profile", help="write a cProfile (pstats, thread CPU) of the measured batches here")
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    from bench.engine import _commands
    from bench.infra import cpu_seconds
    from bench.seed import seed_base
    from orders.sequencer.loop import Sequencer
    from orders.sequencer.recovery import heap_settle

    if connection.vendor != "postgresql":
        raise SystemExit("PostgreSQL only (DATABASE_URL)")
    call_command("migrate", verbosity=0)
    traders = [f"bench-trader-{i:03d}" for i in range(args.traders)]
    if User.objects.filter(username__in=traders).count() < len(traders):
        seed_base(traders=args.traders, makers=0, password="batch-cost")  # noqa: S106  (a throwaway database)
    users = list(User.objects.filter(username__in=traders).values_list("pk", flat=True))

    announcer_cpu = [0.0]

    def timed(work: Callable[[], None]) -> None:
        began = time.thread_time()
        try:
            work()
        finally:
            announcer_cpu[0] += time.thread_time() - began

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="announcer")
    sequencer = Sequencer(symbols={"ETH-USDT"}, announce=lambda work: executor.submit(timed, work))
    sequencer.load()
    heap_settle()  # as the engine process does once its books are loaded
    with connection.cursor() as cursor:  # the sequencer's connection's server process, for its CPU
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])

    pg_cpu: dict[int, float] = {}  # per size: PostgreSQL's CPU for its batches (a local server)
    # Per batch: statements; those sent on their own (a round trip each); pipelines entered
    # (PostgreSQL's pipeline mode: a round trip each, one more per read in between).
    statements, alone, pipelines = [0], [0], [0]
    me = threading.get_ident()
    piped = [False]

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if threading.get_ident() == me:
            statements[0] += 1
            now_piped = bool(connection.connection.pgconn.pipeline_status)
            if not now_piped:
                alone[0] += 1
            elif not piped[0]:
                pipelines[0] += 1
            piped[0] = now_piped
        return execute(sql, params, many, context)

    rnd = random.Random(7)  # noqa: S311  (a reproducible load, not a secret)
    live: dict[int, list[Any]] = {}
    market_id = sequencer.markets[0].spec.id

    def batch(size: int) -> tuple[float, float, int, float, int, int]:
        chunk = _commands(users, size, rnd, live)
        for command in chunk:
            command["check_user"] = True
        statements[0] = alone[0] = pipelines[0] = 0
        piped[0] = False
        announced = announcer_cpu[0]
        pg = cpu_seconds(backend)  # read before the thread's clocks start: not counted as the thread's
        wall, cpu = time.perf_counter(), time.thread_time()
        with connection.execute_wrapper(count):
            # Sequencer.run answers an overlapped batch (ENGINE_OVERLAP_MIN_COMMANDS or more)
            # with the next call, and lands it before a smaller one: what a call returns
            # may be an earlier batch's answers, and a small batch after a large one
            # carries the large one's landing in its time.
            done = sequencer.run(chunk) if args.via == "run" else [(chunk, sequencer.run_batch(chunk))]
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        pg_cpu[size] = pg_cpu.get(size, 0.0) + cpu_seconds(backend) - pg
        executor.submit(lambda: None).result()  # the announcer's work of this batch done
        tally(done)
        return cpu, wall, statements[0], announcer_cpu[0] - announced, alone[0], pipelines[0]

    def tally(done: list[tuple[list[Any], list[Any]]]) -> None:
        for commands, answers in done:
            for command, answer in zip(commands, answers, strict=True):
                if answer["status"] >= 500:
                    raise SystemExit(f"batch failed: {answer}")
                order = answer.get("order")
                if order and order["status"] in ("open", "partially_filled"):
                    live.setdefault(command["user_id"], []).append((int(order["id"]), market_id))

    figures: dict[int, list[tuple[float, float, int, float, int, int]]] = {size: [] for size in args.sizes}
    for _ in range(args.warmup):
        for size in args.sizes:
            batch(size)
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    if profiler is not None:
        profiler.enable()
    pg_cpu.clear()
    for _ in range(args.batches):
        for size in args.sizes:  # taking turns: the machine's load falls on every size alike
            figures[size].append(batch(size))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    tally(sequencer.flush())  # the last overlapped batch, if any
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average {' '.join(load)} (at the end); {args.batches} batches per size after {args.warmup} of warm-up")
    print(
        "size | thread CPU ms/batch median, mean | wall ms median, mean | announcer CPU ms"
        " | statements | alone | pipelines | PostgreSQL CPU ms"
    )
    for size, rows in figures.items():
        cpu = [row[0] * 1000 for row in rows]
        wall = [row[1] * 1000 for row in rows]
        print(
            f"{size:>4} | {statistics.median(cpu):6.2f} {statistics.mean(cpu):6.2f}"
            f" | {statistics.median(wall):6.2f} {statistics.mean(wall):6.2f}"
            f" | {statistics.mean(row[3] * 1000 for row in rows):6.2f}"
            f" | {statistics.mean(row[2] for row in rows):5.2f}"
            f" | {statistics.mean(row[4] for row in rows):5.2f}"
            f" | {statistics.mean(row[5] for row in rows):5.2f}"
            f" | {1000 * pg_cpu[size] / len(rows):6.2f}"
        )
    executor.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
