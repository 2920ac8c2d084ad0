"""`python -m bench [--smoke]`: every benchmark in one run on a dedicated PostgreSQL
database (created, then dropped), with a private Redis and anvil, all on 127.0.0.1.

Writes `bench/results.json` (a flat JSON object of numbers; `--output` elsewhere) and
prints a table, also kept with the EXPLAIN plans and the server logs in var/bench/<profile>/."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.infra import ROOT, BenchError, PgServer, django_env, log, private_redis, python
from bench.profiles import PROFILES, Profile

REQUIRED_KEYS = (
    "orders_per_s",
    "p50_ms",
    "p99_ms",
    "pgbench_tps",
    "ratio_to_pgbench",
    "web_cpu_ms_per_request",
    "engine_orders_per_s",
    "engine_batch_p99_ms",
    "engine_request_ms_mean",
    "engine_command_ms_mean",
    "depth_latency_ratio",
    "engine_start_s",
    "engine_rss_mb",
    "failover_s",
    "delivery_events_per_s",
    "delivery_speedup",
    "gas_per_event_ratio",
    "redrive_select_ms",
    "failure_report_ms",
    "web_rss_mb",
    "worker_rss_mb",
)
# key: (comparison, target)
TARGETS: dict[str, tuple[str, float]] = {
    "orders_per_s": (">=", 1000),
    "p99_ms": ("<=", 50),
    "ratio_to_pgbench": (">=", 0.4),
    "web_cpu_ms_per_request": ("<=", 1.5),
    "engine_orders_per_s": (">=", 5000),
    "depth_latency_ratio": ("<=", 1.25),
    "engine_start_s": ("<=", 5),
    "engine_rss_mb": ("<=", 300),
    "failover_s": ("<=", 5),
    "delivery_events_per_s": (">=", 1000),
    "delivery_speedup": (">=", 20),
    "gas_per_event_ratio": ("<=", 0.10),
    "redrive_select_ms": ("<=", 10),
    "failure_report_ms": ("<=", 250),
    "web_rss_mb": ("<=", 200),
    "worker_rss_mb": ("<=", 300),
}
PARTS = ("api", "cpu", "depth", "engine", "delivery", "scans")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="small sizes and short durations (CI)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--database", default=None, help="benchmark database name (must contain 'bench')")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database (debugging)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    profile = PROFILES["smoke" if args.smoke else "full"]
    # The web server's shape can be varied for experiments (the figures say which was used).
    workers, threads = os.environ.get("BENCH_WEB_WORKERS"), os.environ.get("BENCH_WEB_THREADS")
    if workers or threads:
        profile = dataclasses.replace(
            profile,
            web_workers=int(workers or profile.web_workers),
            web_threads=int(threads or profile.web_threads),
        )
    if engine_batch := os.environ.get("BENCH_ENGINE_BATCH"):
        profile = dataclasses.replace(profile, engine_batch=int(engine_batch))
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        print(f"unknown parts: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    database = (
        args.database or os.environ.get("BENCH_DB_NAME") or ("platform_bench_smoke" if args.smoke else "platform_bench")
    )
    try:
        results, notes = run(profile=profile, database=database, parts=parts, keep=args.keep_database)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    table = render_table(results, notes=notes, profile=profile)
    (_outdir(profile) / "results.txt").write_text(table + "\n")
    print(table)
    log(f"wrote {args.output}")
    return 0


def _outdir(profile: Profile) -> Path:
    return ROOT / "var" / "bench" / profile.name


def run(*, profile: Profile, database: str, parts: list[str], keep: bool) -> tuple[dict[str, Any], list[str]]:
    started = time.time()
    load_at_start = os.getloadavg()[0]
    server = PgServer.from_env()
    server.check()
    from revenue.chain.devnode import find_anvil

    if "delivery" in parts and find_anvil() is None:
        raise BenchError("anvil is not installed: run `make install` (npm ci) first")
    if "api" in parts and shutil.which("pgbench") is None:
        raise BenchError("pgbench is not installed (Debian: apt-get install postgresql-client)")
    outdir = _outdir(profile)
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    (outdir / "staticfiles").mkdir()  # STATIC_ROOT under VAR_DIR: whitenoise warns when it is missing
    notes = [f"PostgreSQL {server.version()} at {server.host}:{server.port}, database {database} (dropped afterwards)"]
    results: dict[str, Any] = {}
    with private_redis(outdir) as redis_url:
        notes.append(
            "broker and cache: private redis-server"
            if redis_url
            else "redis-server not found: memory:// broker and per-process cache instead of Redis"
        )
        env = django_env(database_url=server.database_url(database), redis_url=redis_url, var_dir=outdir)
        log(f"profile {profile.name}: creating database {database}")
        server.create(database)
        try:
            _migrate(env, outdir)
            os.environ.update(env)
            os.environ["LOG_LEVEL"] = "WARNING"  # in-process parts: no per-order log lines on the console
            # In-process parts run the sequencer in this process (never while an engine
            # process serves the same markets: the api part stops its engine when done).
            os.environ["ENGINE_TRANSPORT"] = "inprocess"
            import django

            django.setup()
            results.update(
                _run_parts(
                    profile=profile, env=env, outdir=outdir, parts=parts, server=server, database=database, notes=notes
                )
            )
        finally:
            _close_connections()
            if keep:
                log(f"kept database {database}")
            else:
                server.drop(database)
                log(f"dropped database {database}")
    results["bench_duration_s"] = time.time() - started
    results["bench_unix_time"] = int(started)
    results["machine_cores"] = os.cpu_count() or 0
    results["load_avg_1m_at_start"] = load_at_start
    return _ordered(results, parts), notes


def _close_connections() -> None:
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()


def _migrate(env: dict[str, str], outdir: Path) -> None:
    began = time.perf_counter()
    run = subprocess.run(
        [python(), "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env={**os.environ, **env, "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    (outdir / "migrate.log").write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        raise BenchError(f"migrate failed: {run.stderr[-2000:]}")
    log(f"migrated in {time.perf_counter() - began:.1f} s")


def _run_parts(
    *,
    profile: Profile,
    env: dict[str, str],
    outdir: Path,
    parts: list[str],
    server: PgServer,
    database: str,
    notes: list[str],
) -> dict[str, Any]:
    import secrets

    from bench.seed import seed_base

    results: dict[str, Any] = {}
    seed = seed_base(traders=profile.users, makers=profile.depth_makers, password=secrets.token_urlsafe(16))

    if "api" in parts:
        from bench.api_load import ENGINE_HISTOGRAMS, run_api_load, run_pgbench

        # The web workers send to the engine process: os.environ holds the in-process
        # transport of the in-process parts, which would give every worker a book of its own.
        # ORDER_RATE_WORKERS=1: each load client keeps one connection, so one web process,
        # and gets the whole per-user rate there, as with the shared throttle before.
        web_env = {**os.environ, **env, "LOG_LEVEL": "INFO", "ENGINE_TRANSPORT": "zmq", "ORDER_RATE_WORKERS": "1"}
        api = run_api_load(profile=profile, env=web_env, workdir=outdir, traders=seed.traders, password=seed.password)
        (outdir / "api.json").write_text(json.dumps(api, indent=2))
        results.update(
            orders_per_s=api["orders_per_s"],
            p50_ms=api["p50_ms"],
            p99_ms=api["p99_ms"],
            web_rss_mb=api["web_rss_mb"],
            api_p90_ms=api["p90_ms"],
            api_non_2xx=api["non_2xx"],
            api_errors=api["errors"],
            loadgen_cpu_percent=api["loadgen_cpu_percent"],
            web_cpu_percent=sum(api["watched_cpu_percent"].values()),
            machine_busy_percent=api["machine_busy_percent"],
            web_cpu_ms_per_request=api["web_cpu_ms_per_request"],
            pg_cpu_ms_per_request=api["pg_cpu_ms_per_request"],
            loadgen_cpu_ms_per_request=api["loadgen_cpu_ms_per_request"],
        )
        cpu_ms = api["web_cpu_ms_per_request"] + api["pg_cpu_ms_per_request"] + api["loadgen_cpu_ms_per_request"]
        # What the measured CPU cost per request would allow if every core were ours (an estimate).
        results["cpu_bound_orders_per_s_estimate"] = 1000 * (os.cpu_count() or 1) / cpu_ms if cpu_ms else 0.0
        for key, value in api.get("pg_sessions", {}).items():
            results[f"pg_sessions_{key}"] = value
        sessions = api.get("pg_sessions", {})
        answered_per_s = (api["ok"] + api["non_2xx"]) / api["window_s"] if api["window_s"] else 0.0
        if sessions and answered_per_s:
            # Little's law: sessions inside a transaction (working, or idle in it while Python
            # runs) over the request rate ~ how long each request holds its market's row lock.
            busy = sessions["running"] + sessions["other_wait"] + sessions["idle_in_transaction"]
            results["lock_hold_ms_estimate"] = 1000 * busy / answered_per_s
        results["engine_cpu_ms_per_request"] = api["engine_cpu_ms_per_request"]
        results["engine_commands_per_batch"] = api["engine_commands_per_batch"]
        results["api_mean_ms"] = api["mean_ms"]
        for key in (*ENGINE_HISTOGRAMS, "outside_engine_ms_mean"):  # with BENCH_METRICS on (the default)
            if key in api:
                results[key] = api[key]
        for op, stats in api["by_op"].items():
            results[f"api_{op}_p50_ms"] = stats["p50_ms"]
            results[f"api_{op}_p99_ms"] = stats["p99_ms"]
        notes.append(
            f"API: gunicorn -c config/gunicorn.py config.asgi (the Procfile's web), config.settings.production, "
            f"{api['web_workers']} uvicorn workers; {profile.clients} clients / {profile.users} users; "
            f"answers {api['statuses']}"
        )
        pg = run_pgbench(server=server, database=database, profile=profile, workdir=outdir)
        results.update(pg)
        results["ratio_to_pgbench"] = results["orders_per_s"] / pg["pgbench_tps"] if pg["pgbench_tps"] else 0.0
        notes.append(
            f"pgbench: TPC-B scale {profile.pgbench_scale}, -c {profile.pgbench_clients} -j {profile.pgbench_threads} "
            f"-T {profile.pgbench_seconds}, same server, after the API load"
        )

    if "cpu" in parts:
        from bench.order_cpu import run_order_cpu

        requests, warmup = (600, 60) if profile.name == "full" else (60, 10)
        cpu = run_order_cpu(traders=seed.traders, requests=requests, warmup=warmup)
        results.update({k: v for k, v in cpu.items() if isinstance(v, int | float)})
        notes.append(
            f"cpu: the load mix one request at a time in process (Django test client, JWT), {requests} requests "
            f"after {warmup} warm-up; answers {cpu['order_api_statuses']}; CPU of this process per 2xx request "
            "(Python and driver, not PostgreSQL)"
        )

    if "depth" in parts:
        from bench.depth import run_depth

        depth = run_depth(
            small_market=seed.markets["DPS-USDT"],
            large_market=seed.markets["DPL-USDT"],
            taker=seed.taker,
            makers=seed.makers,
            small=profile.depth_small,
            large=profile.depth_large,
            warmup=profile.depth_warmup,
            placements=profile.depth_placements,
        )
        results.update({k: v for k, v in depth.items() if isinstance(v, int | float)})
        notes.append(
            f"depth: order_place in process, {profile.depth_placements} limit placements at the top of each book "
            f"(taking 0.001 from the best maker, or joining the best level and then cancelled untimed); books of "
            f"{depth['depth_resting_small']:,} and {depth['depth_resting_large']:,} resting orders in the same table, "
            "measured interleaved (depth_small_alone_*: the small book before the large one existed)"
        )

    if "engine" in parts:
        from bench.engine import run_engine_start, run_engine_throughput, run_failover

        results.update(
            run_engine_throughput(traders=seed.traders, commands=profile.engine_commands, batch=profile.engine_batch)
        )
        engine_env = {**os.environ, **env, "LOG_LEVEL": "INFO", "ENGINE_TRANSPORT": "zmq"}
        results.update(
            run_engine_start(
                env=engine_env,
                workdir=outdir,
                resting=profile.engine_resting,
                stops=profile.engine_stops,
                makers=seed.makers,
            )
        )
        results.update(run_failover(env=engine_env, workdir=outdir, traders=seed.traders))
        notes.append(
            f"engine: the sequencer in process, {profile.engine_commands:,} commands of the load mix in batches of "
            f"{profile.engine_batch}, each batch one PostgreSQL transaction; start: manage.py engine with "
            f"{profile.engine_resting:,} resting orders and {profile.engine_stops:,} stops, process start to "
            "leading; failover: active + standby engine processes, the active SIGKILLed under a command stream"
        )

    if "delivery" in parts:
        results.update(_delivery(profile=profile, outdir=outdir, notes=notes))

    if "scans" in parts:
        from bench.scans import run_scans

        scans, plans = run_scans(events=profile.scan_events, failed=profile.scan_failed, repeats=profile.scan_repeats)
        (outdir / "plans.txt").write_text(plans + "\n")
        print(plans, flush=True)
        results.update({k: v for k, v in scans.items() if isinstance(v, int | float)})
        source = (
            "the delivery service's revenue_events_deliverable(stale_only=True)"
            if scans["redrive_source_service"]
            else "the ORM query in bench/scans.py"
        )
        notes.append(
            f"scans: {profile.scan_events:,} events, {profile.scan_failed:,} failed; median of {profile.scan_repeats} "
            f"warm runs; redrive_select_ms from {source}; plans in {outdir / 'plans.txt'}"
        )
    return results


def _delivery(*, profile: Profile, outdir: Path, notes: list[str]) -> dict[str, Any]:
    """Primitives first (always), then the Django delivery service if it is there and
    works; the service's figures are preferred."""
    config = {
        "batch": profile.delivery_batch,
        "batched_events": profile.delivery_batched_events,
        "single_events": profile.delivery_single_events,
    }
    (outdir / "delivery.json").write_text(json.dumps(config))
    log(
        f"delivery (revenue.chain.client): {profile.delivery_single_events} one-event transactions, then "
        f"{profile.delivery_batched_events:,} events in batches of {profile.delivery_batch}"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    subprocess.run(
        [python(), "-m", "bench.delivery", str(outdir / "delivery.json"), str(outdir / "delivery-result.json")],
        cwd=ROOT,
        check=True,
        timeout=900,
        env=env,
    )
    primitive = json.loads((outdir / "delivery-result.json").read_text())
    results = dict(primitive)
    results.update(
        delivery_events_per_s=primitive["primitive_events_per_s"],
        delivery_speedup=primitive["primitive_speedup"],
        gas_per_event_ratio=primitive["gas_per_event_ratio"],
        worker_rss_mb=primitive["primitive_rss_mb"],
        delivery_source_service=0,
    )
    source = (
        f"revenue.chain.client primitives (batches of {profile.delivery_batch}); one-event tx "
        f"{primitive['gas_single_tx']:,.0f} gas, batched {primitive['gas_per_event_batched']:,.0f} gas/event"
    )

    service_config = {
        "batched_events": profile.delivery_service_events,
        "single_events": profile.delivery_service_single_events,
    }
    (outdir / "delivery-service.json").write_text(json.dumps(service_config))
    log(
        f"delivery (revenue.delivery.revenue_events_deliver): {profile.delivery_service_single_events} events one "
        f"per transaction, then {profile.delivery_service_events:,} in batches of DELIVERY_BATCH_SIZE"
    )
    run = subprocess.run(
        [
            python(),
            "-m",
            "bench.delivery_service",
            str(outdir / "delivery-service.json"),
            str(outdir / "delivery-service-result.json"),
        ],
        cwd=ROOT,
        timeout=900,
        env=env,
        capture_output=True,
        text=True,
    )
    (outdir / "delivery-service.log").write_text(run.stdout + run.stderr)
    if run.returncode == 0:
        service = json.loads((outdir / "delivery-service-result.json").read_text())
        results.update(service)
        results.update(
            delivery_events_per_s=service["service_events_per_s"],
            delivery_speedup=service["service_speedup"],
            gas_per_event_ratio=service["service_gas_per_event_ratio"] or primitive["gas_per_event_ratio"],
            worker_rss_mb=service["service_rss_mb"],
            delivery_source_service=1,
        )
        source = (
            f"the delivery service revenue_events_deliver (batches of {service['service_batch_size']}, delivered = "
            f"confirmed); one-event tx {service['service_gas_single_tx']:,.0f} gas, batched "
            f"{service['service_gas_per_event_batched']:,.0f} gas/event; primitives also measured (primitive_*)"
        )
    else:
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["?"]
        log(f"delivery: the service could not be measured ({tail[0][:300]}); see {outdir / 'delivery-service.log'}")
        source += f"; the delivery service failed: {tail[0][:200]}"
    notes.append(f"delivery: {source}; worker_rss_mb is the delivering process's VmHWM")
    return results


def _ordered(results: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    ordered = {key: results[key] for key in REQUIRED_KEYS if key in results}
    ordered.update({key: value for key, value in results.items() if key not in ordered})
    return {key: (round(value, 4) if isinstance(value, float) else value) for key, value in ordered.items()}


def render_table(results: dict[str, Any], *, notes: list[str], profile: Profile) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results.get("bench_unix_time", time.time())))
    lines = [
        f"Benchmark ({profile.name}) {stamp}; {os.cpu_count()} cores; Python {platform.python_version()}; "
        "other processes may have been running",
        f"{'metric':<28}{'value':>14}  {'target':<10}{'':<8}",
        "-" * 62,
    ]
    for key in REQUIRED_KEYS:
        if key not in results:
            continue
        target = TARGETS.get(key)
        verdict = ""
        if target is not None:
            op, bound = target
            met = results[key] >= bound if op == ">=" else results[key] <= bound
            verdict = "met" if met else "NOT MET"
        target_text = f"{target[0]} {target[1]:g}" if target else ""
        lines.append(f"{key:<28}{_fmt(results[key]):>14}  {target_text:<10}{verdict}")
    lines.append("-" * 62)
    for key, value in results.items():
        if key not in REQUIRED_KEYS:
            lines.append(f"{key:<40}{_fmt(value):>14}")
    lines.append("")
    lines.extend(f"* {note}" for note in notes)
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
