"""The smoke benchmark (`make bench-smoke`) runs end to end on PostgreSQL, writes every
result key as a number and drops its database. Figures are not checked: benchmarks are
not pass/fail tests, this only keeps them working."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.infra import PgServer
from bench.runner import REQUIRED_KEYS
from revenue.chain.devnode import find_anvil
from tests.environment import require

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
# one database per run: two checkouts may test side by side on one server
DATABASE = f"platform_bench_pytest_{os.getpid()}"


def _require(what: str, present: bool) -> None:
    require(present, f"the smoke benchmark needs {what}")


@pytest.mark.timeout(300)
def test_smoke_benchmark_writes_every_key_as_a_number(tmp_path: Path) -> None:
    _require("the project-local anvil (npm ci)", find_anvil() is not None)
    _require("pgbench (postgresql-client)", shutil.which("pgbench") is not None)
    output = tmp_path / "results.json"
    # The benchmark sets up its own (production) settings; the test settings must not leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--database", DATABASE, "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"

    results = json.loads(output.read_text())
    missing = [key for key in REQUIRED_KEYS if key not in results]
    assert not missing, f"missing keys: {missing}"
    for key, value in results.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{key}={value!r} is not a number"
        assert math.isfinite(value), f"{key}={value!r}"
    for key in REQUIRED_KEYS:
        assert results[key] > 0, f"{key} should have been measured: {results[key]!r}"
    assert "orders_per_s" in run.stdout  # the readable table
    # The in-process part (bench/order_cpu.py): CPU and statements of real order requests.
    assert results["order_api_cpu_ms_per_request"] > 0 and results["order_api_queries_limit_gtc"] >= 5

    with PgServer.from_env().maintenance() as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
    assert left is None, f"the benchmark left its database {DATABASE} behind"


def test_benchmark_refuses_a_database_that_is_not_a_benchmark_database() -> None:
    from bench.infra import BenchError

    with pytest.raises(BenchError):
        PgServer.from_env().drop("platform")
