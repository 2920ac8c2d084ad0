"""Shared harness of the reliability tests: real processes, real services, 127.0.0.1 only.

Reuses the benchmark's infrastructure (bench.infra: the PostgreSQL server, free ports,
process stopping, the production Django environment; bench.api_load.WebServer: gunicorn
with gthread workers; bench.seed: the ledger-consistent seed) and adds what fault tests
need on top: services that can be stopped and started again on the same port (a private
redis-server, a private PostgreSQL cluster), a Celery worker that can be SIGKILLed, an
HTTP trader that records every answer, the database invariants checked after a run, and
the figures file of each test (var/reliability/<test>.json)."""

from __future__ import annotations

import contextlib
import glob
import http.client
import json
import os
import pwd
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import psycopg

from bench.api_load import WebServer
from bench.infra import (
    ROOT,
    ChildProcess,
    EngineProcess,
    PgServer,
    RedisServer,
    django_env,
    free_port,
    python,
)
from core.platform import platform_key_prefix
from tests import environment
from tests.migrated import schema_key
from tests.waiting import wait_until

FIGURES_DIR = ROOT / "var" / "reliability"
DB_PREFIX = "reliability_"
SAFE_DB_NAME = re.compile(r"^reliability_[a-z0-9_]{1,50}$")


def require(what: str, present: bool) -> None:
    environment.require(present, f"the reliability tests need {what}")


def log(message: str) -> None:
    print(f"[reliability {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- figures ----------------------------------------------------------------------------


class Figures(dict[str, Any]):
    """What a test measured; written to var/reliability/<name>.json and printed, also when
    the test fails (then with "result": "failed"), so the docs can cite the last run."""

    def __init__(self, name: str) -> None:
        super().__init__(test=name, result="failed", started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.name = name
        self._began = time.monotonic()

    def passed(self) -> None:
        self["result"] = "passed"

    def write(self) -> Path:
        self["duration_s"] = round(time.monotonic() - self._began, 1)
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        path = FIGURES_DIR / f"{self.name}.json"
        text = json.dumps(self, indent=2, sort_keys=True, default=str)
        path.write_text(text + "\n")
        print(f"\n[reliability] {self.name}: {text}", flush=True)
        return path


# --- PostgreSQL: dedicated databases, a private cluster ----------------------------------


def _check_name(name: str) -> None:
    # Never create or drop anything but a reliability database.
    if not SAFE_DB_NAME.match(name):
        raise ValueError(f"refusing database name {name!r}: it must match {SAFE_DB_NAME.pattern}")


TEMPLATE_PREFIX = f"{DB_PREFIX}template_"
PLATFORM_SETTINGS = "config.settings.production"  # django_env's
TEMPLATE_LOCK = 0x7E3A_1E55  # advisory lock: one process builds a template, the others wait for it


def database_migrated(server: PgServer, name: str, *, workdir: Path) -> str:
    """A new database with every migration applied: a copy of a template migrated once per
    schema (CREATE DATABASE ... TEMPLATE: a fraction of a second, where `migrate` takes 6-8 s
    of a core, for each of the dozen platforms of a run)."""
    _check_name(name)
    template = migrated_template(server, workdir=workdir)
    with server.maintenance() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return server.database_url(name)


def migrated_template(server: PgServer, *, workdir: Path) -> str:
    """The server's template for the current schema, migrated (under the production settings
    the platforms run) by the first process that needs it; templates of other schemas go."""
    template = f"{TEMPLATE_PREFIX}{schema_key(PLATFORM_SETTINGS)}"
    with server.maintenance() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [TEMPLATE_LOCK])  # released when conn closes
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone():
            return template
        stale = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{TEMPLATE_PREFIX}%"])
        for (old,) in stale.fetchall():
            _check_name(old)
            conn.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
        building = f"{template}_building"  # dropped above if a run was killed while building it
        _check_name(building)
        conn.execute(f'CREATE DATABASE "{building}"')
        env = platform_env(database_url=server.database_url(building), redis_url=None, workdir=workdir)
        began = time.monotonic()
        try:
            run_python("manage.py", "migrate", "--noinput", env={**os.environ, **env}, timeout=300)
        except BaseException:
            conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
            raise
        # Renamed once complete: a template that exists is a migrated one.
        conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{template}"')
        log(f"template {template} migrated in {time.monotonic() - began:.1f} s")
    return template


def run_python(*argv: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [python(), *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    return run


def database_drop(server: PgServer, name: str) -> None:
    _check_name(name)
    with server.maintenance() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server binaries (Debian layout first)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(part) for part in re.findall(r"\d+", p.split("/")[4])],
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivateCluster:
    """A throw-away PostgreSQL cluster (initdb) on a free loopback port, which a test may
    stop and start at will; never the system server. initdb and pg_ctl refuse to run as
    root, so as root they run as the `postgres` OS user."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="reliability-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @staticmethod
    def usable() -> tuple[bool, str]:
        bindir = pg_bindir()
        if bindir is None:
            return False, "initdb/pg_ctl (the PostgreSQL server package)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return False, "a `postgres` OS user to run initdb as (running as root)"
            if shutil.which("runuser") is None:
                return False, "runuser (util-linux) to run initdb as `postgres`"
        return True, ""

    def _run(self, *argv: str, timeout: float) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {run.stdout[-1500:]} {run.stderr[-1500:]}")

    def init(self) -> PrivateCluster:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", timeout=120
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            # Loopback only, its own socket directory; fsync off: only the processes stop,
            # never the machine, and the shared disk is spared.
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = off\nmax_connections = 60\n"
                "shared_buffers = 32MB\n"
            )
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "start", timeout=90)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", timeout=90)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def server(self) -> PgServer:
        return PgServer(url=f"postgres://postgres@127.0.0.1:{self.port}/postgres")


# --- the platform: a dedicated database and its environment -----------------------------


@dataclass
class Platform:
    """One dedicated, migrated and seeded database with the environment of every process
    that serves it (production settings, generated secret)."""

    server: PgServer
    name: str
    workdir: Path
    env: dict[str, str]
    seed: dict[str, Any] = field(default_factory=dict)
    engines: list[EngineProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.database_url(self.name)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def process_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.env, **extra}

    def run(self, *argv: str, timeout: float, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_python(*argv, env=self.process_env(**extra), timeout=timeout)

    def seed_with(self, **config: Any) -> dict[str, Any]:
        config_path, result_path = self.workdir / "seed.json", self.workdir / "seed-result.json"
        config_path.write_text(json.dumps(config))
        self.run("-m", "tests.reliability.seed", str(config_path), str(result_path), timeout=300)
        self.seed = json.loads(result_path.read_text())
        return self.seed


def platform_env(*, database_url: str, redis_url: str | None, workdir: Path, **extra: str) -> dict[str, str]:
    env = django_env(database_url=database_url, redis_url=redis_url, var_dir=workdir)
    (workdir / "staticfiles").mkdir(exist_ok=True)  # STATIC_ROOT under VAR_DIR: whitenoise warns when missing
    # Quiet logs, no on-chain delivery unless a test wants it, tokens that outlive the test.
    env.update({"LOG_LEVEL": "WARNING", "DELIVERY_ENABLED": "0", "JWT_ACCESS_MINUTES": "60"})
    env.update(extra)
    return env


# --- Celery -----------------------------------------------------------------------------


class CeleryWorker(ChildProcess):
    """`celery worker --pool=solo` (one process, as scripts/run runs it), which a test may
    SIGKILL; ready once it logs that it is."""

    def __init__(self, platform: Platform, *, queues: str = "celery,chain", name: str = "worker") -> None:
        self.platform = platform
        self.queues = queues
        self.log_path = platform.workdir / f"{name}.log"
        self.node = f"{name}-{os.getpid()}-{random.randrange(10**6)}@reliability"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, timeout: float = 60.0) -> CeleryWorker:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [
                    python(),
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--pool=solo",
                    "-Q",
                    self.queues,
                    "-n",
                    self.node,
                    "-l",
                    "info",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=ROOT,
                env=self.platform.process_env(LOG_LEVEL="INFO"),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        self.starts += 1

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the Celery worker exited at start; see {self.log_path}")
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                return b" ready." in handle.read()

        wait_until(ready, timeout=timeout, interval=0.2, what="the Celery worker to be ready")
        return self


class TaskPublisher:
    """Publishes tasks by name to the platform's broker, as beat would: no Django in this
    process. The connection is made from the URL explicitly: Celery's broker_url setting
    would prefer a CELERY_BROKER_URL in the environment (the test run's own broker). The
    keys carry the platform's prefix, as its processes' (config/settings/base.py)."""

    def __init__(self, platform: Platform) -> None:
        from celery import Celery

        self.url = platform.env["CELERY_BROKER_URL"]
        self.app = Celery("reliability-publisher", set_as_current=False)
        self.app.conf.broker_connection_timeout = 2.0
        prefix = platform_key_prefix(dj_database_url.parse(platform.env["DATABASE_URL"]))
        self.app.conf.broker_transport_options = {"global_keyprefix": f"{prefix}:"} if prefix else {}

    def send(self, name: str, *, queue: str = "celery", **options: Any) -> str:
        """Publishes `name` (`options`: send_task's, a beat entry's headers and expiry); its task id."""
        with self.app.connection_for_write(self.url) as conn:
            assert conn.as_uri().endswith(urlsplit(self.url).netloc + urlsplit(self.url).path)
            sent = self.app.send_task(
                name,
                queue=queue,
                connection=conn,
                retry=True,
                retry_policy={"max_retries": 3, "interval_start": 0.2},
                **options,
            )
            return str(sent.id)

    def close(self) -> None:
        self.app.close()


# --- HTTP traders --------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketSpec:
    symbol: str
    ref_ticks: int  # reference price in ticks of 0.01
    qty_units: tuple[int, int]  # quantity range in units of 10**-qty_decimals
    qty_decimals: int
    spread_ticks: int  # standard deviation of prices around the reference

    def price(self, ticks: int) -> str:
        ticks = max(ticks, 1)
        return f"{ticks // 100}.{ticks % 100:02d}"

    def quantity(self, rnd: random.Random) -> str:
        units = rnd.randint(*self.qty_units)
        text = str(units).rjust(self.qty_decimals + 1, "0")
        return f"{text[: -self.qty_decimals]}.{text[-self.qty_decimals :]}"


# The two markets of bench.seed with their reference prices (ETH 2000.00, BTC 60000.00).
MARKETS = (
    MarketSpec("ETH-USDT", ref_ticks=200_000, qty_units=(100, 500), qty_decimals=4, spread_ticks=300),
    MarketSpec("BTC-USDT", ref_ticks=6_000_000, qty_units=(100, 200), qty_decimals=5, spread_ticks=9_000),
)
# Placement mix: kind -> weight. Cancels come on top (CANCEL_SHARE of the placements).
ORDER_MIX = {"limit_gtc": 45, "limit_ioc": 15, "limit_fok": 12, "market_ioc": 20, "market_fok": 8}
CANCEL_SHARE = 0.12


def order_body(rnd: random.Random, kind: str, client_order_id: str) -> dict[str, Any]:
    """A random order around the reference price: resting and crossing limits, IOC and
    FOK that may or may not fill, market orders (filled by the book or the house)."""
    market = MARKETS[rnd.randrange(len(MARKETS))]
    side = rnd.choice(("buy", "sell"))
    sign = 1 if side == "buy" else -1
    body: dict[str, Any] = {
        "market": market.symbol,
        "side": side,
        "quantity": market.quantity(rnd),
        "client_order_id": client_order_id,
    }
    spread = market.spread_ticks
    if kind == "limit_gtc":
        distance = abs(rnd.gauss(0, spread))
        # Two in three rest passively on their side of the reference; one in three crosses it.
        offset = -distance if rnd.random() < 0.66 else distance / 2
        body.update(type="limit", time_in_force="GTC", price=market.price(market.ref_ticks + round(sign * offset)))
    elif kind in ("limit_ioc", "limit_fok"):
        offset = rnd.uniform(-0.3, 1.5) * spread  # mostly crossing, sometimes not far enough
        tif = "IOC" if kind == "limit_ioc" else "FOK"
        body.update(type="limit", time_in_force=tif, price=market.price(market.ref_ticks + round(sign * offset)))
    else:
        body.update(type="market", time_in_force="IOC" if kind == "market_ioc" else "FOK")
    return body


@dataclass
class Answer:
    status: int  # 0: no HTTP answer (connection error or timeout)
    body: Any
    content_type: str
    seconds: float
    at: float  # monotonic time when the answer arrived
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def envelope_code(self) -> str | None:
        """The contract's error code, when the body is the JSON error envelope."""
        if "application/json" not in self.content_type or not isinstance(self.body, dict):
            return None
        error = self.body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str):
            return str(error["code"])
        return None


class HttpClient:
    """One keep-alive connection with one user's JWT."""

    def __init__(self, port: int, token: str, *, timeout: float) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        began = time.monotonic()
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            now = time.monotonic()
            return Answer(0, None, "", now - began, now, error=f"{type(exc).__name__}: {exc}")
        if response.will_close:
            self.close()
        now = time.monotonic()
        content_type = response.getheader("Content-Type") or ""
        parsed: Any = data.decode(errors="replace")
        if "application/json" in content_type:
            with contextlib.suppress(ValueError):
                parsed = json.loads(data)
        return Answer(response.status, parsed, content_type, now - began, now)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Attempt:
    op: str
    status: int
    seconds: float
    at: float
    code: str | None
    json: bool
    error: str = ""


@dataclass
class Placement:
    client_order_id: str
    body: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    answer: Answer | None = None  # the last one

    @property
    def acknowledged(self) -> bool:
        return self.answer is not None and self.answer.ok


@dataclass
class RetryPolicy:
    statuses: frozenset[int] = frozenset()  # answers worth retrying (the same request, same client_order_id)
    transport: bool = False  # retry when no HTTP answer came back
    patience: float = 0.0  # seconds to keep retrying one request
    pause: float = 0.2


class Trader(threading.Thread):
    """One user placing random orders through the HTTP API (every placement with its own
    client_order_id, so a retry can never place twice) and cancelling some of its resting
    ones; every attempt and its answer is recorded."""

    def __init__(
        self,
        index: int,
        *,
        port: int,
        token: str,
        seed: int,
        placements: int | None,
        stop: threading.Event,
        deadline: float,
        timeout: float,
        retry: RetryPolicy,
        pause: float = 0.0,
        mix: dict[str, int] | None = None,
    ) -> None:
        super().__init__(name=f"trader-{index}", daemon=True)
        self.index = index
        self.client = HttpClient(port, token, timeout=timeout)
        self.rnd = random.Random(seed * 1_000 + index)
        self.placements_wanted = placements
        self.stop_event = stop
        self.deadline = deadline
        self.retry = retry
        self.pause = pause
        mix = mix or ORDER_MIX
        self.kinds, self.weights = list(mix), list(mix.values())
        self.placements: list[Placement] = []
        self.cancels: list[tuple[str, Answer]] = []
        self.attempts: list[Attempt] = []
        self.resting: list[str] = []
        self.failure: BaseException | None = None
        self.finished = False

    def _send(self, op: str, method: str, path: str, body: dict[str, Any] | None) -> tuple[Answer, list[Attempt]]:
        tries: list[Attempt] = []
        first = time.monotonic()
        while True:
            answer = self.client.request(method, path, body)
            attempt = Attempt(
                op,
                answer.status,
                answer.seconds,
                answer.at,
                answer.envelope_code,
                "application/json" in answer.content_type,
                answer.error,
            )
            tries.append(attempt)
            self.attempts.append(attempt)
            again = answer.status in self.retry.statuses or (answer.status == 0 and self.retry.transport)
            if not again or time.monotonic() - first > self.retry.patience or time.monotonic() > self.deadline:
                return answer, tries
            time.sleep(self.retry.pause)

    def _more(self) -> bool:
        if self.stop_event.is_set() or time.monotonic() > self.deadline:
            return False
        return self.placements_wanted is None or len(self.placements) < self.placements_wanted

    def run(self) -> None:
        try:
            while self._more():
                if self.resting and self.rnd.random() < CANCEL_SHARE:
                    order_id = self.resting.pop()  # the newest: like a quote being replaced
                    answer, _ = self._send("cancel", "POST", f"/api/orders/{order_id}/cancel", None)
                    self.cancels.append((order_id, answer))
                kind = self.rnd.choices(self.kinds, weights=self.weights)[0]
                coid = f"t{self.index}-{len(self.placements)}"
                placement = Placement(coid, order_body(self.rnd, kind, coid))
                placement.answer, placement.attempts = self._send(
                    f"place_{kind}", "POST", "/api/orders", placement.body
                )
                self.placements.append(placement)
                body = placement.answer.body
                if (
                    placement.answer.ok
                    and isinstance(body, dict)
                    and body.get("status") in ("open", "partially_filled")
                ):
                    self.resting.append(str(body["id"]))
                if self.pause:
                    time.sleep(self.pause)
            self.finished = True
        except BaseException as exc:  # handed to the test
            self.failure = exc
        finally:
            self.client.close()


def traders_run(traders: list[Trader], *, timeout: float) -> None:
    for trader in traders:
        trader.start()
    traders_join(traders, timeout=timeout)


def traders_join(traders: list[Trader], *, timeout: float) -> None:
    """Wait for every trader (bounded), then hand over the first failure of any."""
    end = time.monotonic() + timeout
    for trader in traders:
        trader.join(max(0.0, end - time.monotonic()))
    alive = [t.name for t in traders if t.is_alive()]
    assert not alive, f"traders still running after {timeout:g} s: {alive}"
    for trader in traders:
        if trader.failure is not None:
            raise trader.failure


def status_counts(traders: list[Trader]) -> dict[str, int]:
    """Every HTTP answer by operation and status ("0" when none came back)."""
    counts: Counter[str] = Counter(f"{a.op}:{a.status}" for t in traders for a in t.attempts)
    return dict(sorted(counts.items()))


def statuses_total(traders: list[Trader]) -> dict[str, int]:
    counts: Counter[str] = Counter(str(a.status) for t in traders for a in t.attempts)
    return dict(sorted(counts.items()))


# --- invariants, checked in the database after a run -------------------------------------

INVARIANTS: dict[str, str] = {
    # balances never negative, never more locked than held
    "wallet_negative_or_overlocked": """
        SELECT id FROM orders_wallet WHERE balance < 0 OR locked < 0 OR locked > balance""",
    # every wallet's lock is exactly what its live orders hold (nothing leaked, nothing lost)
    "wallet_lock_mismatch": """
        WITH held AS (
            SELECT o.user_id, CASE WHEN o.side = 'buy' THEN m.quote_id ELSE m.base_id END AS asset_id,
                   sum(o.locked_amount) AS amount
            FROM orders_order o JOIN orders_market m ON m.id = o.market_id
            WHERE o.status IN ('open', 'partially_filled', 'pending_trigger') GROUP BY 1, 2),
        traders AS (SELECT id, user_id, asset_id, locked FROM orders_wallet WHERE bucket = 0)
        SELECT coalesce(w.id, -h.user_id) FROM traders w
        FULL OUTER JOIN held h ON h.user_id = w.user_id AND h.asset_id = w.asset_id
        WHERE coalesce(w.locked, 0) <> coalesce(h.amount, 0)
        UNION ALL
        SELECT id FROM orders_wallet WHERE bucket <> 0 AND locked <> 0""",
    "order_overfilled": """
        SELECT id FROM orders_order WHERE filled_quantity > quantity OR filled_quantity < 0""",
    # a FOK is filled completely or not at all
    "fok_partially_filled": """
        SELECT id FROM orders_order WHERE time_in_force = 'FOK'
        AND NOT ((status = 'filled' AND filled_quantity = quantity) OR (status <> 'filled' AND filled_quantity = 0))""",
    "fok_unfilled_with_trades": """
        SELECT o.id FROM orders_order o WHERE o.time_in_force = 'FOK' AND o.status <> 'filled'
        AND EXISTS (SELECT 1 FROM orders_trade t WHERE t.taker_order_id = o.id OR t.maker_order_id = o.id)""",
    # market / IOC / FOK orders never outlive their request
    "kill_order_not_terminal": """
        SELECT id FROM orders_order WHERE (type = 'market' OR time_in_force IN ('IOC', 'FOK'))
        AND status IN ('open', 'partially_filled', 'pending_trigger')""",
    # an order's fills are its trades, on both sides: quantity, notional and fees
    "fills_differ_from_trades": """
        WITH legs AS (
            SELECT taker_order_id AS order_id, quantity, quote_amount, taker_fee AS fee FROM orders_trade
            UNION ALL
            SELECT maker_order_id, quantity, quote_amount, maker_fee FROM orders_trade
            WHERE maker_order_id IS NOT NULL),
        sums AS (SELECT order_id, sum(quantity) AS q, sum(quote_amount) AS n, sum(fee) AS f FROM legs GROUP BY 1)
        SELECT o.id FROM orders_order o LEFT JOIN sums s ON s.order_id = o.id
        WHERE o.filled_quantity <> coalesce(s.q, 0) OR o.quote_filled <> coalesce(s.n, 0)
           OR o.fee_paid <> coalesce(s.f, 0)""",
    # states that would be half-applied
    "order_half_state": """
        SELECT id FROM orders_order WHERE
           (status = 'filled' AND filled_quantity <> quantity)
        OR (status IN ('open', 'pending_trigger') AND filled_quantity <> 0)
        OR (status = 'partially_filled' AND (filled_quantity = 0 OR filled_quantity >= quantity))
        OR (status IN ('filled', 'cancelled', 'expired', 'error') AND locked_amount <> 0)
        OR (status IN ('open', 'partially_filled') AND locked_amount <= 0)""",
    # the recorded history ends in the order's status
    "order_events_disagree": """
        SELECT o.id FROM orders_order o
        LEFT JOIN LATERAL (SELECT status FROM orders_orderevent e WHERE e.order_id = o.id
                           ORDER BY e.id DESC LIMIT 1) last ON true
        WHERE last.status IS DISTINCT FROM o.status""",
    # orders' trade outbox has one row per trade
    "trade_without_job": """
        SELECT t.id FROM orders_trade t LEFT JOIN orders_tradeoutbox j ON j.trade_id = t.id WHERE j.id IS NULL""",
}


def invariant_violations(platform: Platform) -> dict[str, list[Any]]:
    """For each invariant, the offending rows (at most 20 ids each); all empty when sound."""
    found: dict[str, list[Any]] = {}
    with platform.connect() as conn:
        for name, sql in INVARIANTS.items():
            rows = conn.execute(f"SELECT * FROM ({sql}) AS v LIMIT 20").fetchall()  # noqa: S608 - this module's SQL
            found[name] = [row[0] for row in rows]
    return found


def engine_leader_pid(platform: Platform, shard: str = "main") -> int | None:
    """The server process of the session holding the shard's lock (the active engine's
    orders.sequencer.leadership), None while no engine holds it."""
    from orders.sequencer.leadership import lock_key_parts

    high, low = lock_key_parts(shard)
    rows = platform.query(
        """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND classid = %s::oid AND objid = %s::oid AND objsubid = 1""",
        [high, low],
    )
    return int(rows[0][0]) if rows else None


def ledger_check(port: int, staff_token: str) -> dict[str, Any]:
    """The staff ledger endpoint (orders.selectors.ledger.ledger_check): per asset, the
    deposits against the sum of every balance."""
    client = HttpClient(port, staff_token, timeout=30)
    try:
        answer = client.request("GET", "/api/admin/ledger")
    finally:
        client.close()
    assert answer.status == 200, f"ledger endpoint: {answer.status} {answer.body!r}"
    assert isinstance(answer.body, dict)
    return answer.body


def ledger_sql(platform: Platform) -> dict[str, tuple[Decimal, Decimal]]:
    """The same ledger, computed independently: asset -> (deposits, balances)."""
    rows = platform.query(
        """
        SELECT a.symbol,
               (SELECT coalesce(sum(amount), 0) FROM orders_deposit d WHERE d.asset_id = a.id),
               (SELECT coalesce(sum(balance), 0) FROM orders_wallet w WHERE w.asset_id = a.id)
        FROM orders_asset a ORDER BY a.symbol"""
    )
    return {symbol: (Decimal(credited), Decimal(balances)) for symbol, credited, balances in rows}


def assert_ledger_balanced(platform: Platform, port: int, staff_token: str) -> dict[str, str]:
    ledger = ledger_check(port, staff_token)
    assert ledger["balanced"] is True, f"the ledger does not balance: {ledger}"
    assert ledger["assets"] and all(asset["balanced"] for asset in ledger["assets"]), ledger
    for symbol, (credited, balances) in ledger_sql(platform).items():
        assert credited == balances, f"{symbol}: deposits {credited} != balances {balances}"
    return {asset["asset"]: asset["balances"] for asset in ledger["assets"]}


def traffic_figures(traders: list[Trader]) -> dict[str, Any]:
    """What the traders sent and got back, for a test's figures."""
    attempts = [a for t in traders for a in t.attempts]
    return {
        "requests": len(attempts),
        "statuses": statuses_total(traders),
        "statuses_by_op": status_counts(traders),
        "max_latency_s": round(max(a.seconds for a in attempts), 3),
    }


def assert_platform_sound(figures: Figures, platform: Platform, *, port: int, staff_token: str) -> dict[str, Any]:
    """After a run: the orders by kind and status, every invariant (recorded, then
    asserted) and the ledger, all in the figures. Returns the order counts."""
    counts = order_counts(platform)
    figures.update(counts)
    violations = invariant_violations(platform)
    figures["invariant_violations"] = {name: len(rows) for name, rows in violations.items()}
    assert violations == {name: [] for name in violations}
    figures["ledger_balances"] = assert_ledger_balanced(platform, port, staff_token)
    return counts


def order_counts(platform: Platform) -> dict[str, Any]:
    rows = platform.query("SELECT type, time_in_force, status, count(*) FROM orders_order GROUP BY 1, 2, 3")
    by_status: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    for kind, tif, status, count in rows:
        by_status[status] += count
        by_kind[f"{kind}_{tif}"] += count
    ((trades, house, fees),) = platform.query(
        "SELECT count(*), count(*) FILTER (WHERE is_house), coalesce(sum(taker_fee + maker_fee), 0) FROM orders_trade"
    )
    return {
        "orders": sum(by_status.values()),
        "orders_by_status": dict(sorted(by_status.items())),
        "orders_by_kind": dict(sorted(by_kind.items())),
        "trades": trades,
        "house_trades": house,
        "fees_total": str(fees),
    }


@contextlib.contextmanager
def block_producer(uri: str, *, every: float) -> Iterator[threading.Event]:
    """A live chain's blocks: mine one every `every` seconds (anvil still mines each
    transaction at once), so confirmations accrue without new transactions."""
    from revenue.chain.devnode import AnvilRPC

    rpc = AnvilRPC(uri, timeout=5)
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):  # the node may be busy; the next tick mines
                rpc.evm_mine()

    thread = threading.Thread(target=run, name="block-producer", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(10)


# --- the rig: every process and database of one test, stopped and dropped in reverse ----


class Rig:
    """Starts what a test asks for and registers its teardown: processes stopped, private
    services shut down, dedicated databases dropped, in reverse order of creation."""

    def __init__(self, stack: contextlib.ExitStack, workdir: Path, tag: str) -> None:
        self.stack = stack
        self.workdir = workdir
        self.tag = re.sub(r"[^a-z0-9_]", "_", tag.lower())[:20]

    def system_postgres(self) -> PgServer:
        server = PgServer.from_env()
        try:
            server.check()
        except Exception as exc:  # BenchError with the reason
            require(f"PostgreSQL ({exc})", False)
        return server

    def redis(self) -> RedisServer:
        require("redis-server", shutil.which("redis-server") is not None)
        server = RedisServer(self.workdir)
        self.stack.callback(server.stop)
        return server.start()

    def cluster(self) -> PrivateCluster:
        usable, missing = PrivateCluster.usable()
        require(missing, usable)
        bindir = pg_bindir()
        assert bindir is not None
        cluster = PrivateCluster(bindir)
        self.stack.callback(cluster.destroy)
        cluster.init().start()
        return cluster

    def anvil(self, **kwargs: Any) -> Any:
        from revenue.chain.devnode import AnvilNode, find_anvil

        require("the project-local anvil (npm ci)", find_anvil() is not None)
        node = AnvilNode(**kwargs)
        self.stack.callback(node.stop)
        return node.start()

    def platform(
        self,
        *,
        server: PgServer | None = None,
        redis_url: str | None = None,
        seed: dict[str, Any] | None = None,
        **env: str,
    ) -> Platform:
        server = server or self.system_postgres()
        name = f"{DB_PREFIX}{self.tag}_{os.getpid()}_{random.randrange(16**6):06x}"
        url = database_migrated(server, name, workdir=self.workdir)
        self.stack.callback(database_drop, server, name)
        platform = Platform(
            server=server,
            name=name,
            workdir=self.workdir,
            env=platform_env(database_url=url, redis_url=redis_url, workdir=self.workdir, **env),
        )
        began = time.monotonic()
        platform.seed_with(**(seed or {"traders": 4}))
        log(f"database {name} seeded in {time.monotonic() - began:.1f} s")
        return platform

    def engine(
        self, platform: Platform, *, name: str = "engine", wait: bool = True, bind: str | None = None
    ) -> EngineProcess:
        """One engine process of the platform's (single) shard; a second one stands by.
        `bind`: its own endpoint of the shard (ENGINE_SHARDS naming one per engine)."""
        engine = EngineProcess(env=platform.process_env(), log_path=self.workdir / f"{name}.log", bind=bind)
        self.stack.callback(engine.stop)
        platform.engines.append(engine)
        return engine.start(wait=wait)

    def web(self, platform: Platform, *, workers: int = 2, threads: int = 4) -> WebServer:
        if not platform.engines:  # the web answers orders through the engine (docs/matching.md)
            self.engine(platform)
        server = WebServer(
            env=platform.process_env(), workers=workers, threads=threads, log_path=self.workdir / "web.log"
        )
        self.stack.callback(server.stop)
        return server.start()

    def worker(self, platform: Platform, **kwargs: Any) -> CeleryWorker:
        worker = CeleryWorker(platform, **kwargs)
        self.stack.callback(worker.stop)
        return worker.start()

    def publisher(self, platform: Platform) -> TaskPublisher:
        publisher = TaskPublisher(platform)
        self.stack.callback(publisher.close)
        return publisher
