"""/metrics under several gunicorn workers, started as the Procfile's `web` line starts
them (config/gunicorn.py) with PROMETHEUS_MULTIPROC_DIR: whichever worker answers the
scrape, a counter equals the number of requests every worker answered, and it never goes
down, also after a worker is killed and replaced (per-worker registries read 40, 34, 29:
fake resets)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from bench.infra import ROOT, free_port, python, stop_process
from tests.deploy.processes import json_lines
from tests.reliability.harness import Rig
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

WORKERS = 4
REQUESTS = 60
KILL_AFTER = 25  # requests before one worker is SIGKILLed (the master starts another)
SAMPLE = 'django_http_requests_total_by_view_transport_method_total{method="GET",transport="http",view="api-markets"}'


def counted(port: int) -> float:
    """The counter, from a scrape on a fresh connection (any worker may answer it)."""
    scrape = requests.get(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"}, timeout=10)
    assert scrape.status_code == 200, (scrape.status_code, scrape.text[:2000])
    text = scrape.text
    for line in text.splitlines():
        if line.startswith(SAMPLE + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def worker_pids(log_path: Path) -> set[int]:
    return {int(line["pid"]) for line in json_lines(log_path) if line.get("message", "").startswith("Booting worker")}


def markets_answered_by(log_path: Path) -> set[int]:
    return {
        int(line["pid"])
        for line in json_lines(log_path)
        if line.get("logger") == "core.requests" and line.get("path") == "/api/markets"
    }


def gunicorn_serving(rig: Rig, *, workers: int, **env: str) -> tuple[subprocess.Popen[bytes], int, Path, Path]:
    """The Procfile's web line over a fresh platform with PROMETHEUS_MULTIPROC_DIR, once its
    `workers` workers answer: (the master, its port, the metrics directory, its JSON log).
    No engine runs: with the production transport each scrape's engine gauge waited ~0.5 s
    for one (~32 s of a test's 38)."""
    platform = rig.platform(seed={"traders": 1})
    port = free_port()
    metrics_dir = rig.workdir / "prometheus"
    metrics_dir.mkdir()
    log_path = rig.workdir / "web.log"
    process_env = platform.process_env(
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        PORT=str(port),
        WEB_WORKERS=str(workers),
        LOG_FORMAT="json",
        METRICS_ALLOWED_NETWORKS="127.0.0.1/32",
        ENGINE_TRANSPORT="inprocess",
        **env,
    )
    with open(log_path, "wb") as log_file:
        web = subprocess.Popen(  # the Procfile's web line
            [python(), "-m", "gunicorn", "-c", "config/gunicorn.py", "config.asgi:application"],
            cwd=ROOT,
            env=process_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    rig.stack.callback(stop_process, web, timeout=30)
    wait_until(
        lambda: (
            len(worker_pids(log_path)) >= workers
            # Another view than the one counted: a probe that timed out on a loaded machine is
            # still answered, after the baseline was read.
            and requests.get(f"http://127.0.0.1:{port}/api/time", timeout=5).status_code == 200
        ),
        what=f"gunicorn with {workers} workers to answer",
        timeout=60,
        interval=0.2,
        ignoring=(OSError,),
    )
    return web, port, metrics_dir, log_path


@pytest.mark.timeout(240)
def test_counters_add_up_over_gunicorn_workers_and_never_go_down(rig: Rig) -> None:
    web, port, _, log_path = gunicorn_serving(rig, workers=WORKERS, LOG_LEVEL="INFO")
    baseline = counted(port)  # 0 unless a worker's file survived from elsewhere
    readings: list[float] = []
    killed: int | None = None
    for sent in range(1, REQUESTS + 1):
        answer = requests.get(f"http://127.0.0.1:{port}/api/markets", headers={"Connection": "close"}, timeout=10)
        assert answer.status_code == 200
        readings.append(counted(port) - baseline)
        assert readings[-1] == sent, f"after {sent} requests the counter read {readings}"
        if sent == KILL_AFTER:
            # A worker that answered the counted view (not only a probe or a scrape), so the
            # killed one's share must survive in the sum.
            served = markets_answered_by(log_path) & worker_pids(log_path)
            killed = min(served)
            os.kill(killed, signal.SIGKILL)
            wait_until(
                lambda: len(worker_pids(log_path)) > WORKERS,
                what="the master to replace the killed worker",
                timeout=30,
                interval=0.2,
            )
    assert readings == sorted(readings), readings  # never down
    answered_by = markets_answered_by(log_path)
    assert len(answered_by) >= 2, f"one worker answered everything ({answered_by}): the test proves nothing"
    assert killed in answered_by
    assert web.poll() is None
    web.send_signal(signal.SIGTERM)
    assert web.wait(timeout=60) == 0


def restarts_recorded(metrics_dir: Path, process: str) -> float:
    """platform_process_restarts_total{process} as /metrics sums it, read from the files."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    value = registry.get_sample_value("platform_process_restarts_total", {"process": process})
    return value or 0.0


@pytest.mark.timeout(180)
def test_a_web_worker_that_dies_is_counted_as_a_restart_and_a_stop_is_not(rig: Rig) -> None:
    # gunicorn replaces a worker killed by the kernel's OOM killer, crashed or timed out,
    # at once, so the supervisor of scripts/serve never sees it: a web worker dying again
    # and again (its clients' connections cut mid-request, no 5xx counted) was one ERROR
    # line each and no metric, no alert.
    web, port, metrics_dir, log_path = gunicorn_serving(rig, workers=2)
    scraped = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'platform_process_restarts_total{process="web-worker"} 0.0' in scraped
    os.kill(min(worker_pids(log_path)), signal.SIGKILL)
    wait_until(lambda: len(worker_pids(log_path)) > 2, what="a new worker", timeout=30, interval=0.2)
    scraped = requests.get(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"}, timeout=10).text
    assert 'platform_process_restarts_total{process="web-worker"} 1.0' in scraped
    web.send_signal(signal.SIGTERM)  # a stop: both workers exit, asked to
    assert web.wait(timeout=60) == 0
    assert restarts_recorded(metrics_dir, "web-worker") == 1.0
