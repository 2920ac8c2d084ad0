"""A Celery worker outlives a Redis outage (config/broker.py): a real redis-server and a real
worker, as the Procfile starts the chain worker. The worker holds a task with an ETA (as it
holds the post-trade and delivery runs) when Redis stops; it used to exit with
"Unrecoverable error: AttributeError('NoneType' object has no attribute 'hostname')", and
scripts/serve stopped every other process with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.infra import ROOT, RedisServer, stop_process
from tests import environment
from tests.waiting import wait_until


def _worker_env(broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PROMETHEUS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        CELERY_BROKER_URL=f"{broker_url}/1",
        REDIS_URL=f"{broker_url}/0",
        LOG_FORMAT="json",
    )
    return env


@pytest.mark.timeout(120)
def test_a_worker_holding_a_task_with_an_eta_reconnects_after_a_redis_outage(tmp_path: Path) -> None:
    environment.require(shutil.which("redis-server") is not None, "this test needs redis-server")
    redis = RedisServer(tmp_path).start()
    env = _worker_env(redis.url)
    log_path = tmp_path / "worker.log"
    worker: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "wb") as log_file:
            worker = subprocess.Popen(
                [str(Path(sys.executable).parent / "celery"), "-q", "-A", "config", "worker", "-Q", "chain",
                 "-n", "chain@%h", "--pool", "solo", "--concurrency", "1", "--without-mingle", "--without-gossip"],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )  # fmt: skip

        def logged(text: str) -> int:
            return log_path.read_text(errors="replace").count(text)

        wait_until(lambda: logged(" ready.") >= 1, what="the worker ready", timeout=60)
        subprocess.run(
            [sys.executable, "-c", "from config.celery import app; "
             "app.send_task('revenue.tasks.revenue_delivery_run', countdown=300, queue='chain')"],
            cwd=ROOT, env=env, check=True, timeout=60,
        )  # fmt: skip
        wait_until(lambda: logged("revenue_delivery_run") >= 1, what="the task with its ETA held by the worker")

        redis.stop()
        wait_until(lambda: logged("Connection to broker lost") >= 1, what="the worker seeing Redis gone")
        time.sleep(3)  # it exited within milliseconds of that line
        assert worker.poll() is None, log_path.read_text(errors="replace")[-3000:]
        assert logged("Unrecoverable error") == 0

        redis.start()  # same port, empty
        wait_until(lambda: logged("Connected to redis://") >= 2, what="the worker connected again", timeout=60)
        assert worker.poll() is None
    finally:
        stop_process(worker, timeout=30)
        redis.stop()
    assert worker.returncode == 0, log_path.read_text(errors="replace")[-3000:]
