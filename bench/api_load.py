"""1. Order API throughput: the Procfile's web process (gunicorn with uvicorn ASGI workers,
production settings) under 8 keep-alive HTTP clients in a separate process, then pgbench
TPC-B on the same PostgreSQL server."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.infra import (
    ROOT,
    BenchError,
    EngineProcess,
    PgServer,
    children,
    cpu_seconds,
    free_port,
    log,
    python,
    stop_process,
    vm_hwm_mb,
)
from bench.profiles import Profile
from orders.sequencer.shards import shards_parse

MIX = {"limit_gtc": 60, "market_ioc": 20, "fok": 10, "cancel": 10}
LOADGEN_MARKETS = [
    # ETH-USDT: reference 2000.00, tick 0.01, 0.0100-0.0500 ETH, prices N(ref, 0.2%)
    {
        "symbol": "ETH-USDT",
        "ref_ticks": 200_000,
        "tick_units": 1,
        "decimals": 2,
        "qty_units": [100, 500],
        "qty_decimals": 4,
        "spread_ticks": 400,
    },
    # BTC-USDT: reference 60000.00, tick 0.01, 0.00100-0.00200 BTC
    {
        "symbol": "BTC-USDT",
        "ref_ticks": 6_000_000,
        "tick_units": 1,
        "decimals": 2,
        "qty_units": [100, 200],
        "qty_decimals": 5,
        "spread_ticks": 12_000,
    },
]


class WebServer:
    """The Procfile's web process (config/gunicorn.py: gunicorn with uvicorn ASGI workers,
    config.uvicorn_worker.PlatformUvicornWorker, config.asgi), sized by the profile."""

    def __init__(self, *, env: dict[str, str], workers: int, threads: int, log_path: Path) -> None:
        self.port = free_port()
        self.env = env
        self.workers = workers
        self.threads = threads
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self) -> WebServer:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # As the Procfile's `web` line runs it, with the bench's address and size.
        shape = {
            "WEB_BIND": f"127.0.0.1:{self.port}",
            "WEB_WORKERS": str(self.workers),
            "WEB_THREADS": str(self.threads),
        }
        self.process = subprocess.Popen(
            [python(), "-m", "gunicorn", "-c", "config/gunicorn.py", "config.asgi:application"],
            cwd=ROOT,
            env={**self.env, **shape},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited at start; see {self.log_path}")
            if len(self.worker_pids()) >= self.workers and self._healthy():
                return self
            time.sleep(0.2)
        raise BenchError(f"gunicorn did not become healthy within 60 s; see {self.log_path}")

    def _healthy(self) -> bool:
        try:
            status, _ = self.request("GET", "/healthz")
        except OSError:
            return False
        return status == 200

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data[:1] in (b"{", b"[") else {})
        finally:
            conn.close()

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.process is not None else []

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        if self._log is not None:
            self._log.close()


class ActivitySampler(threading.Thread):
    """Where the benchmark database's sessions are, sampled every 100 ms during the
    measured window (pg_stat_activity): running a statement, waiting for a row lock,
    idle in transaction (the application works while holding its locks) or idle; and the
    CPU time its server processes (backends) used over the window."""

    def __init__(self, database_url: str, *, delay: float, seconds: float) -> None:
        super().__init__(name="pg-activity", daemon=True)
        self.database_url, self.delay, self.seconds = database_url, delay, seconds
        self.samples: list[dict[str, int]] = []
        self.backend_cpu_s = 0.0

    @staticmethod
    def _backends_cpu(conn: Any) -> dict[int, float]:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        cpu = {}
        for (pid,) in pids:
            with contextlib.suppress(OSError):  # ended meanwhile, or a server on another host
                cpu[int(pid)] = cpu_seconds(int(pid))
        return cpu

    def run(self) -> None:
        import psycopg

        time.sleep(self.delay)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            end = time.monotonic() + self.seconds
            before = self._backends_cpu(conn)
            while time.monotonic() < end:
                rows = conn.execute(
                    "SELECT state, wait_event_type, count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1, 2"
                ).fetchall()
                sample = {"running": 0, "lock_wait": 0, "other_wait": 0, "idle_in_transaction": 0, "idle": 0}
                for state, wait, count in rows:
                    if state == "active":
                        key = "running" if wait is None else "lock_wait" if wait == "Lock" else "other_wait"
                    elif state and state.startswith("idle in transaction"):
                        key = "idle_in_transaction"
                    else:
                        key = "idle"
                    sample[key] += int(count)
                self.samples.append(sample)
                time.sleep(0.1)
            after = self._backends_cpu(conn)
            self.backend_cpu_s = sum(after[pid] - before.get(pid, 0.0) for pid in after if pid in before)

    def averages(self) -> dict[str, float]:
        if not self.samples:
            return {}
        keys = self.samples[0].keys()
        return {key: round(sum(s[key] for s in self.samples) / len(self.samples), 2) for key in keys}


def _profilers(
    workers: list[int], engines: list[int], *, seconds: float, workdir: Path
) -> list[subprocess.Popen[bytes]]:
    """BENCH_PYSPY=1 (wall: every non-idle thread) or BENCH_PYSPY=gil (only the thread holding
    the GIL, i.e. Python CPU): sample every web worker with py-spy (not a project dependency:
    `.venv/bin/pip install py-spy`) into collapsed stacks, var/bench/<profile>/pyspy-<pid>.txt;
    with BENCH_PYSPY_ENGINE=1 the engine processes instead, into pyspy-engine-<pid>.txt
    (one line per thread: `--threads`)."""
    mode = os.environ.get("BENCH_PYSPY", "")
    if mode not in {"1", "gil"}:
        return []
    on_engine = os.environ.get("BENCH_PYSPY_ENGINE") == "1"
    pids, name = (engines, "pyspy-engine") if on_engine else (workers, "pyspy")
    binary = shutil.which("py-spy") or str(Path(python()).with_name("py-spy"))
    if not Path(binary).exists():
        raise BenchError("BENCH_PYSPY=1 needs py-spy: .venv/bin/pip install py-spy")
    log(f"py-spy: sampling {len(pids)} {'engines' if on_engine else 'web workers'} for {seconds:g} s")
    return [
        subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(workdir / f"{name}-{pid}.txt"),
                *(["--gil"] if mode == "gil" else []),
                *(["--threads"] if on_engine else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


# The histograms of an order's time at the engine (core.metrics), read from /metrics.
ENGINE_HISTOGRAMS = {
    "engine_request_ms_mean": "platform_engine_request_seconds",  # the web worker's round trip
    "engine_command_ms_mean": "platform_engine_command_seconds",  # read off the engine's socket to answered
    "engine_batch_ms_mean": "platform_engine_batch_seconds",
}


def _histogram_totals(server: WebServer, token: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each of ENGINE_HISTOGRAMS, summed over the processes (web workers
    and engine share PROMETHEUS_MULTIPROC_DIR, as under scripts/serve)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    if response.status != 200:
        raise BenchError(f"/metrics answered {response.status}")
    values = {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}
    return {
        name: (values.get(f"{name}_sum", 0.0), values.get(f"{name}_count", 0.0)) for name in ENGINE_HISTOGRAMS.values()
    }


def _engine_counts(server: WebServer) -> tuple[int, int]:
    """(batches, commands) the engines have run so far, as /healthz reports them."""
    try:
        _, body = server.request("GET", "/healthz")
    except OSError:
        return 0, 0
    engines = body.get("engines")
    reports = [e for e in engines.values() if isinstance(e, dict)] if isinstance(engines, dict) else []
    return sum(int(e.get("batches", 0)) for e in reports), sum(int(e.get("commands", 0)) for e in reports)


def _tokens(server: WebServer, usernames: list[str], password: str) -> list[str]:
    def login(username: str) -> str:
        status, body = server.request("POST", "/api/auth/token", {"username": username, "password": password})
        if status != 200:
            raise BenchError(f"login of {username} failed: {status} {body}")
        return str(body["access"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(login, usernames))


def run_api_load(
    *, profile: Profile, env: dict[str, str], workdir: Path, traders: list[str], password: str
) -> dict[str, Any]:
    # The web workers send their orders to the matching engine (docs/matching.md).
    # BENCH_ENGINE_SHARDS (ENGINE_SHARDS' syntax): one engine process per shard instead of
    # the embedded default's one for every market (docs/performance.md, "Two shards").
    # Metrics as scripts/serve runs them: every process writes into one directory, /metrics
    # sums them (the bench reads where an order's time goes from them). BENCH_METRICS=0: off.
    metrics_token = ""
    if os.environ.get("BENCH_METRICS", "1") != "0":
        metrics_dir = workdir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        metrics_token = secrets.token_urlsafe(24)
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": metrics_token}
    names: list[str | None] = [None]
    if os.environ.get("BENCH_ENGINE_SHARDS"):
        env = {**env, "ENGINE_SHARDS": os.environ["BENCH_ENGINE_SHARDS"]}
        names = [shard.name for shard in shards_parse(env["ENGINE_SHARDS"])]
    engines = [
        EngineProcess(env=env, log_path=workdir / f"engine{'-' + name if name else ''}.log", shard=name).start()
        for name in names
    ]
    server = WebServer(
        env=env, workers=profile.web_workers, threads=profile.web_threads, log_path=workdir / "web.log"
    ).start()
    try:
        workers = server.worker_pids()
        log(f"gunicorn up on 127.0.0.1:{server.port}: {len(workers)} uvicorn (ASGI) workers")
        tokens = _tokens(server, traders, password)
        per_client = max(len(tokens) // profile.clients, 1)
        clients = [
            {"tokens": tokens[i * per_client : (i + 1) * per_client] or [tokens[i % len(tokens)]]}
            for i in range(profile.clients)
        ]
        config = {
            "host": "127.0.0.1",
            "port": server.port,
            "clients": clients,
            "markets": LOADGEN_MARKETS,
            "warmup_s": profile.warmup_s,
            "measure_s": profile.measure_s,
            "mix": MIX,
            "seed": 1,
            "watch_pids": workers,
        }
        config_path, result_path = workdir / "loadgen.json", workdir / "loadgen-result.json"
        config_path.write_text(json.dumps(config))
        log(
            f"load: {profile.clients} clients, {len(tokens)} users, {profile.warmup_s:g} s warm-up + "
            f"{profile.measure_s:g} s measured, mix {MIX}"
        )
        cpu_before = {pid: cpu_seconds(pid) for pid in workers}
        engine_cpu_before = sum(cpu_seconds(e.pid) for e in engines)
        batches_before, commands_before = _engine_counts(server)
        histograms_before = _histogram_totals(server, metrics_token) if metrics_token else {}
        profilers = _profilers(
            workers, [e.pid for e in engines], seconds=profile.warmup_s + profile.measure_s, workdir=workdir
        )
        sampler = ActivitySampler(env["DATABASE_URL"], delay=profile.warmup_s + 0.2, seconds=profile.measure_s)
        sampler.start()
        subprocess.run(
            [python(), "-m", "bench.loadgen", str(config_path), str(result_path)],
            cwd=ROOT,
            check=True,
            timeout=profile.warmup_s + profile.measure_s + 120,
        )
        for profiler in profilers:
            profiler.wait(timeout=60)
        sampler.join(timeout=30)
        result = json.loads(result_path.read_text())
        result["pg_sessions"] = sampler.averages()
        batches_after, commands_after = _engine_counts(server)
        if metrics_token:
            # Over the whole load (warm-up included), against the load generator's mean over
            # its window: the rest of an order's time is outside the engine's round trip
            # (HTTP, the web worker, the load generator, and waking each of them).
            histograms_after = _histogram_totals(server, metrics_token)
            for key, name in ENGINE_HISTOGRAMS.items():
                (sum_after, count_after), (sum_before, count_before) = histograms_after[name], histograms_before[name]
                count = count_after - count_before
                result[key] = 1000 * (sum_after - sum_before) / count if count else 0.0
            result["outside_engine_ms_mean"] = result["mean_ms"] - result["engine_request_ms_mean"]
        # Commands per engine batch over the whole load (warm-up included): how far group
        # commit shares a batch's fixed cost (orders.sequencer.server).
        batches = batches_after - batches_before
        result["engine_commands_per_batch"] = (commands_after - commands_before) / batches if batches else 0.0
        answered = result["ok"] + result["non_2xx"]
        window = result["window_s"]
        web_cpu_s = sum(result["watched_cpu_percent"].values()) / 100 * window
        result["web_cpu_ms_per_request"] = 1000 * web_cpu_s / answered if answered else 0.0
        result["pg_cpu_ms_per_request"] = 1000 * sampler.backend_cpu_s / answered if answered else 0.0
        result["loadgen_cpu_ms_per_request"] = 1000 * result["loadgen_cpu_s"] / answered if answered else 0.0
        # The engine's CPU over the whole load (warm-up included) per answer of the window: an upper bound.
        engine_cpu_s = sum(cpu_seconds(e.pid) for e in engines) - engine_cpu_before
        result["engine_cpu_ms_per_request"] = 1000 * engine_cpu_s / answered if answered else 0.0
        result["engine_rss_mb_under_load"] = max(vm_hwm_mb(e.pid) for e in engines)
        result["web_rss_mb"] = max(vm_hwm_mb(pid) for pid in workers)
        result["web_rss_mb_per_worker"] = [round(vm_hwm_mb(pid), 1) for pid in workers]
        result["web_cpu_s_total"] = sum(cpu_seconds(pid) - cpu_before[pid] for pid in workers)
        result["web_workers"] = len(workers)
        result["web_threads"] = profile.web_threads
        return result
    finally:
        server.stop()
        for e in engines:
            e.stop()


TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


def run_pgbench(*, server: PgServer, database: str, profile: Profile, workdir: Path) -> dict[str, Any]:
    binary = shutil.which("pgbench")
    if binary is None:
        raise BenchError("pgbench is not installed (Debian: apt-get install postgresql-client or postgresql-contrib)")
    env = {**os.environ, **server.pg_env()}
    log(f"pgbench: init scale {profile.pgbench_scale}")
    subprocess.run(
        [binary, "-i", "-q", "-s", str(profile.pgbench_scale), database],
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    log(f"pgbench: TPC-B -c {profile.pgbench_clients} -j {profile.pgbench_threads} -T {profile.pgbench_seconds}")
    run = subprocess.run(
        [
            binary,
            "-c",
            str(profile.pgbench_clients),
            "-j",
            str(profile.pgbench_threads),
            "-T",
            str(profile.pgbench_seconds),
            database,
        ],
        env=env,
        check=True,
        timeout=profile.pgbench_seconds + 120,
        capture_output=True,
        text=True,
    )
    (workdir / "pgbench.txt").write_text(run.stdout + run.stderr)
    match = TPS.search(run.stdout)
    if match is None:
        raise BenchError(f"could not read pgbench's tps from: {run.stdout[-500:]}")
    subprocess.run([binary, "-i", "-I", "d", database], env=env, check=True, timeout=120, capture_output=True)
    latency = re.search(r"latency average = ([0-9.]+) ms", run.stdout)
    return {"pgbench_tps": float(match.group(1)), "pgbench_latency_ms": float(latency.group(1)) if latency else 0.0}
