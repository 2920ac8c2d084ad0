"""The production topology as an operator runs it: `scripts/serve` (checks, migrations,
static files, the contract check, then the Procfile under honcho), and gunicorn started
from config/gunicorn.py as the Procfile's `web` line starts it. Output goes to a file;
JSON lines are read back from it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.infra import ROOT
from tests.waiting import wait_until

# The supervisor's lines in text mode (honcho's `system | ...`, prefix stripped below);
# with LOG_FORMAT=json they are JSON objects of logger config.topology (supervisor_lines).
STARTED = re.compile(r"(?:^|\| )(?P<name>[a-z]+\.\d+) started \(pid=(?P<pid>\d+)\)$")
STOPPED = re.compile(r"(?:^|\| )(?P<name>[a-z]+\.\d+) stopped \(rc=(?P<rc>-?\d+)\)$")


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the file that is a JSON object (the processes' log lines)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Served:
    """One `scripts/serve` process; honcho's children are started in sessions of their
    own, so teardown stops honcho with SIGTERM first (it stops them), then SIGKILLs any
    process it reported started and that is still alive."""

    def __init__(self, *, env: dict[str, str], log_path: Path, argv: list[str] | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.argv = argv or [str(ROOT / "scripts" / "serve")]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Served:
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )
        return self

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def plain_lines(self) -> list[str]:
        return [line.strip() for line in self.text().splitlines() if not line.startswith("{")]

    def supervisor_lines(self, event: str) -> list[dict[str, Any]]:
        """The supervisor's JSON lines of `event` (config.topology with LOG_FORMAT=json)."""
        return [
            line
            for line in json_lines(self.log_path)
            if line.get("logger") == "config.topology" and line.get("event") == event
        ]

    def started(self) -> dict[str, int]:
        """Process name -> pid, as the supervisor reported them (the latest start of each)."""
        found = {m["name"]: int(m["pid"]) for m in map(STARTED.search, self.plain_lines()) if m}
        found.update({line["process_name"]: int(line["process_pid"]) for line in self.supervisor_lines("started")})
        return found

    def stopped(self) -> dict[str, int]:
        """Process name -> its exit status (the latest exit of each)."""
        found = {m["name"]: int(m["rc"]) for m in map(STOPPED.search, self.plain_lines()) if m}
        found.update({line["process_name"]: int(line["returncode"]) for line in self.supervisor_lines("stopped")})
        return found

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def assert_running(self) -> None:
        if not self.running():
            raise AssertionError(f"scripts/serve exited early; its output:\n{self.text()[-6000:]}")

    def terminate(self, *, timeout: float) -> int:
        """SIGTERM, as a supervisor stops it; its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def cleanup(self) -> None:
        children = self.started()
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        for pid in children.values():
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # honcho made each its own process group


def wait_lines(path: Path, predicate: Any, *, what: str, timeout: float) -> list[dict[str, Any]]:
    """Wait until the JSON lines of `path` hold one matching `predicate`; all matches."""

    def found() -> list[dict[str, Any]]:
        return [line for line in json_lines(path) if predicate(line)]

    return wait_until(found, what=what, timeout=timeout, interval=0.2)


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 1)
