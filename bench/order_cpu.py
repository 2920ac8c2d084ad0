"""1b. The order API's own cost, without the noise of a loaded server: the same request
mix as the HTTP load (bench/loadgen.py), sent one at a time through Django's full stack
in this process (middleware, JWT authentication, throttle, view, service, serializer),
on the benchmark's PostgreSQL database.

Reported per request: the CPU time of this process (`time.process_time`: Python and
the database driver, not PostgreSQL), the wall time, and the SQL statements issued. On
a 2-core machine under a multi-threaded HTTP load, how much CPU a request takes varies
with contention from run to run by up to 2x; a single thread here varies less (9.7-14.9
ms in one evening's runs on the project VM), so compare code in alternating runs."""

from __future__ import annotations

import cProfile
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from bench.api_load import LOADGEN_MARKETS, MIX
from bench.infra import BenchError, log
from bench.loadgen import Client, Market


def run_order_cpu(*, traders: list[str], requests: int, warmup: int) -> dict[str, Any]:
    from django.contrib.auth.models import User

    users = list(User.objects.filter(username__in=traders).order_by("username"))
    api = APIClient(HTTP_HOST="127.0.0.1")  # the production settings' ALLOWED_HOSTS
    tokens = [str(AccessToken.for_user(user)) for user in users]
    config = {
        "clients": [{"tokens": tokens}],
        "host": "in-process",
        "port": 0,
        "warmup_s": 0,
        "measure_s": 0,
        "mix": MIX,
        "seed": 7,
    }
    markets = [Market(**{**m, "qty_units": tuple(m["qty_units"])}) for m in LOADGEN_MARKETS]
    mix = Client(0, config, markets, start=0.0)  # only its request generator is used
    log(f"order cpu: {warmup} + {requests} requests of the load mix, one at a time, in process")
    cpu_ms: list[float] = []
    wall_ms: list[float] = []
    queries: list[int] = []
    queries_by_op: dict[str, list[int]] = {}
    statuses: dict[str, int] = {}
    # BENCH_SQL_SAMPLE=path: the statements of the first measured request of each kind.
    sample_path = os.environ.get("BENCH_SQL_SAMPLE")
    sample: list[str] | None = [] if sample_path else None
    sampled: set[str] = set()
    # BENCH_CPROFILE=path: a cProfile of the measured requests (pstats file), e.g. for snakeviz.
    profile_path = os.environ.get("BENCH_CPROFILE")
    profiler = cProfile.Profile() if profile_path else None
    for index in range(warmup + requests):
        if profiler is not None and index == warmup:
            profiler.enable()
        op, path, token_index, body = mix._next()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens[token_index]}")
        connection.queries_log.clear()  # a bounded deque: once full, captures would count 0
        with CaptureQueriesContext(connection) as captured:
            cpu_began, wall_began = time.process_time(), time.perf_counter()
            response = api.post(path, body, format="json") if body is not None else api.post(path)
            cpu, wall = time.process_time() - cpu_began, time.perf_counter() - wall_began
        if op == "limit_gtc" and response.status_code == 201:
            order = json.loads(response.content)
            if order.get("status") in ("open", "partially_filled"):
                mix.resting.append((token_index, order["id"]))
        if index < warmup:
            continue
        key = f"{op}:{response.status_code}"
        statuses[key] = statuses.get(key, 0) + 1
        if 200 <= response.status_code < 300:
            cpu_ms.append(cpu * 1000)
            wall_ms.append(wall * 1000)
            queries.append(len(captured))
            queries_by_op.setdefault(op, []).append(len(captured))
            if sample is not None and op not in sampled:
                sampled.add(op)
                sample.append(f"-- {op} ({response.status_code}): {len(captured)} statements")
                sample.extend(q["sql"] for q in captured.captured_queries)
    if profiler is not None and profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
        log(f"order cpu: cProfile written to {profile_path}")
    if sample_path and sample is not None:
        Path(sample_path).write_text("\n".join(sample) + "\n")
    if not cpu_ms:
        raise BenchError(f"order cpu: no 2xx answer: {statuses}")
    return {
        "order_api_cpu_ms_per_request": statistics.mean(cpu_ms),
        "order_api_cpu_p50_ms": statistics.median(cpu_ms),
        "order_api_wall_p50_ms": statistics.median(wall_ms),
        "order_api_queries_per_request": statistics.mean(queries),
        "order_api_requests": len(cpu_ms),
        **{f"order_api_queries_{op}": statistics.mean(counts) for op, counts in sorted(queries_by_op.items())},
        "order_api_statuses": statuses,
    }
