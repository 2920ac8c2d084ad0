"""Start `manage.py engine` of a source tree against a benchmark database that already holds
the books (`python -m bench --parts engine --database NAME --keep-database` leaves one, the
market ENG-USDT with 110,000 live orders) and print, per start: seconds from process start
until it logs that it leads, its CPU (user + system) at that moment, its peak RSS, and its
log lines' times since the start (loading begins, books loaded, leading). REDIS_URL and
CELERY_BROKER_URL are taken from the environment when set.

Alternate two trees to compare code on a noisy machine (the CPU figure moves less with the
load than the wall time):

    for i in 1 2 3; do
      .venv/bin/python scripts/engine_start_times.py /work/old platform_bench_x
      .venv/bin/python scripts/engine_start_times.py /work/new platform_bench_x
    done"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def _proc_status(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return cpu, int(peak.split()[1]) / 1024


def main(tree: Path, database: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="engine-start-"))
    (work / "staticfiles").mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": os.urandom(32).hex(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "VAR_DIR": str(work),
        "WEB3_PROVIDER_URI": "",
        "PYTHONPATH": str(tree),
        # The bench's engine has a Redis; without one, the per-process fallbacks.
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "memory://localhost/"),
        "LOG_LEVEL": "INFO",
        "ENGINE_TRANSPORT": "zmq",
        "ENGINE_SHARDS": f"eng=ENG-USDT@ipc://{work}/engine.sock",
    }
    log_path = work / "engine.log"
    with open(log_path, "wb") as log_file:
        began, began_wall = time.monotonic(), time.time()
        engine = subprocess.Popen(
            [sys.executable, "manage.py", "engine", "--shard", "eng"],
            cwd=tree,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        while b" leading on " not in log_path.read_bytes():
            if engine.poll() is not None:
                raise SystemExit(f"the engine exited:\n{log_path.read_text()}")
            time.sleep(0.05)
        took = time.monotonic() - began
        cpu, peak = _proc_status(engine.pid)
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(10)
        except subprocess.TimeoutExpired:
            engine.kill()
    stamps = [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() - began_wall  # noqa: DTZ007  (local, as logged)
        for line in log_path.read_text().splitlines()
        if line[:2] == "20"
    ]
    print(
        f"{tree.name}: leading after {took:.3f} s, CPU {cpu:.2f} s, peak RSS {peak:.1f} MB, "
        f"log lines at {' / '.join(f'{stamp:.2f}' for stamp in stamps)} s, load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3 or "bench" not in sys.argv[2]:
        raise SystemExit("usage: engine_start_times.py SOURCE_TREE BENCH_DATABASE")
    main(Path(sys.argv[1]).resolve(), sys.argv[2])
