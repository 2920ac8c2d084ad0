"""The benchmark's own infrastructure: a dedicated PostgreSQL database (created and
dropped here), a private Redis, the environment of the production settings, process
helpers and /proc readers. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
SAFE_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class BenchError(RuntimeError):
    """A prerequisite is missing or a step failed; the message says what to do."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- PostgreSQL -----------------------------------------------------------------------


@dataclass(frozen=True)
class PgServer:
    """The PostgreSQL server to benchmark on: BENCH_PG_URL, else the server of a
    postgres DATABASE_URL, else postgres@127.0.0.1:5432. Only the database named by
    the benchmark is ever created, written or dropped."""

    url: str  # any database on the server; only host, port, user and password are used

    @classmethod
    def from_env(cls) -> PgServer:
        url = os.environ.get("BENCH_PG_URL") or ""
        if not url:
            candidate = os.environ.get("DATABASE_URL", "")
            url = candidate if candidate.startswith(("postgres://", "postgresql://")) else DEFAULT_SERVER
        parts = urlsplit(url)
        if parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise BenchError(f"the benchmark runs on a local PostgreSQL only, not {parts.hostname!r}")
        return cls(url=url)

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 5432

    @property
    def user(self) -> str:
        return urlsplit(self.url).username or "postgres"

    @property
    def password(self) -> str | None:
        return urlsplit(self.url).password

    def maintenance(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url("postgres"), autocommit=True, connect_timeout=5)

    def version(self) -> str:
        with self.maintenance() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def check(self) -> None:
        try:
            with self.maintenance() as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise BenchError(
                f"PostgreSQL is not reachable at {self.host}:{self.port} as {self.user} ({exc}). Start it first, "
                "or point BENCH_PG_URL at a local server."
            ) from exc

    def drop(self, name: str) -> None:
        _check_name(name)
        with self.maintenance() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create(self, name: str) -> None:
        _check_name(name)
        self.drop(name)
        with self.maintenance() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def pg_env(self) -> dict[str, str]:
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def _check_name(name: str) -> None:
    # A guard against ever dropping anything but a benchmark database.
    if not SAFE_DB_NAME.match(name) or "bench" not in name:
        raise BenchError(f"refusing database name {name!r}: it must be a plain name containing 'bench'")


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes] | None, *, timeout: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


class RedisServer:
    """A private redis-server (no persistence) on a loopback port fixed at creation: stop()
    and start() again give the same URL back, empty, as after a real crash of an in-memory
    broker."""

    def __init__(self, workdir: Path, *, binary: str = "redis-server") -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        import redis

        self.process = subprocess.Popen(  # fixed argv, no shell
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.RedisError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        self.stop()
                        raise BenchError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
        self.process = None


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[str | None]:
    """A throw-away redis-server on a free loopback port (no persistence); yields its
    URL prefix, or None when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    server = RedisServer(workdir, binary=binary).start()
    try:
        yield server.url
    finally:
        server.stop()


def django_env(*, database_url: str, redis_url: str | None, var_dir: Path) -> dict[str, str]:
    """Production settings (DEBUG off) with generated secrets, plain HTTP on loopback."""
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": database_url,
        "VAR_DIR": str(var_dir),
        "WEB3_PROVIDER_URI": "",
        "PYTHONPATH": str(ROOT),
    }
    if redis_url:
        env["CELERY_BROKER_URL"] = f"{redis_url}/0"
        env["REDIS_URL"] = f"{redis_url}/1"
    else:
        env["CELERY_BROKER_URL"] = "memory://localhost/"
        env["REDIS_URL"] = ""
    return env


def workdir() -> Path:
    base = ROOT / "var" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=base))


def python() -> str:
    return sys.executable


# --- /proc ------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a process (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


class ChildProcess:
    """A process a benchmark or a fault test started: stopped gracefully, or SIGKILLed
    (no shutdown, no acknowledgement, no clean-up of any kind: whatever it was doing
    never commits)."""

    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=15)
        self.process = None

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        self.process = None


class EngineProcess(ChildProcess):
    """`manage.py engine` (orders.sequencer.server): the matching engine of one shard, as
    scripts/run starts it. Ready once it logs that it leads; a test may SIGKILL it."""

    READY = b" leading on "

    def __init__(
        self, *, env: dict[str, str], log_path: Path, shard: str | None = None, bind: str | None = None
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.shard = shard
        self.bind = bind  # its own endpoint of the shard (production: one per engine), else the shard's first
        self.process: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, *, wait: bool = True, timeout: float = 60.0) -> EngineProcess:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [python(), "manage.py", "engine"] + (["--shard", self.shard] if self.shard else [])
        argv += ["--bind", self.bind] if self.bind else []
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )
        if wait:
            self.wait_leading(timeout=timeout)
        return self

    def leading(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"the engine exited; see {self.log_path}")
        with open(self.log_path, "rb") as handle:
            handle.seek(self._offset)
            return self.READY in handle.read()

    def wait_leading(self, *, timeout: float) -> float:
        """Seconds until it leads (loaded its books and bound its socket)."""
        began = time.monotonic()
        while not self.leading():
            if time.monotonic() - began > timeout:
                raise BenchError(f"the engine did not lead within {timeout:g} s; see {self.log_path}")
            time.sleep(0.05)
        return time.monotonic() - began
