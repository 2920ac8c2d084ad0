"""The platform as `make run` starts it, in a temporary VAR_DIR: migrations, the engine
process, seed_demo (alice, bob, carol; a resting book), uvicorn with two ASGI workers.
SQLite and the ZeroMQ relay, or Redis when given (the production channel layer)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from orders.management.commands.seed_demo import demo_password
from tests.migrated import sqlite_migrated
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Platform:
    def __init__(self, var: Path, *, redis_url: str | None) -> None:
        self.var = var
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "STREAMS_RELAY"}
        }
        self.env |= {"DJANGO_SETTINGS_MODULE": "config.settings.local", "VAR_DIR": str(var), "DJANGO_DEBUG": "false"}
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.processes: list[subprocess.Popen[bytes]] = []
        for folder in ("broker/out", "broker/processed", "broker/control", "log"):
            (var / folder).mkdir(parents=True, exist_ok=True)

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True)

    def spawn(self, name: str, *argv: str) -> None:
        with open(self.var / "log" / f"{name}.log", "ab") as log:
            self.processes.append(subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=log))

    def start(self) -> None:
        sqlite_migrated(self.var / "db.sqlite3", env=self.env)
        self.manage("collectstatic", "--noinput")
        self.spawn("engine", sys.executable, "manage.py", "engine")
        engine_log = self.var / "log" / "engine.log"
        wait_until(lambda: b" leading on " in engine_log.read_bytes(), what="the engine to lead", timeout=60)
        self.manage("seed_demo")
        uvicorn = str(Path(sys.executable).parent / "uvicorn")
        self.spawn(
            "web", uvicorn, "config.asgi:application", "--port", str(self.port), "--workers", "2", "--no-proxy-headers"
        )
        # A worker's first answer loads the URLs and every view: seconds on a loaded machine,
        # so a slow first answer is "not yet", like a refused connection.
        wait_until(
            lambda: requests.get(f"{self.url}/api/markets", timeout=10).ok,
            what="uvicorn to answer",
            ignoring=(requests.ConnectionError, requests.Timeout),
            timeout=90,
        )

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def token(self, username: str) -> str:
        answer = requests.post(
            f"{self.url}/api/auth/token",
            json={"username": username, "password": demo_password()},
            timeout=5,
        )
        return str(answer.json()["access"])

    def rest_book(self) -> dict[str, Any]:
        body = requests.get(f"{self.url}/api/markets/ETH-USDT/book?depth=500", timeout=5).json()
        return {"bids": body["bids"], "asks": body["asks"]}
