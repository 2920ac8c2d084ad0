"""`make run` starts again whatever its last run left (issue 19: a second start after a
reference price change crashed in seed_demo with DuplicateClientOrderId, before serving).

The real start path, scripts/run, in a private VAR_DIR (its own SQLite, broker, logs):
start it, trade through the API, move the reference prices through the staff API, stop it
(SIGTERM), start it again: it seeds, serves, and the trade and the prices are still there."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.infra import ROOT, free_port
from tests.waiting import wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.embedded]

TEST_ONLY = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG")
PASSWORD = "demo-password-for-the-restart-test"


@dataclass
class Platform:
    port: int
    var_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def start(self) -> None:
        self.launch()
        wait_until(self._serving, what=f"scripts/run (run {self.runs}) serving: {self.log()[-1500:]}", timeout=240)

    def launch(self) -> None:
        """scripts/run started, not waited for."""
        self.runs += 1
        output = open(self.var_dir.parent / f"run-{self.runs}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            [str(ROOT / "scripts" / "run")], cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def processes(self, command: str = "") -> list[int]:
        """The processes of this run (its VAR_DIR in their environment), whose command line
        contains `command`: scripts/run's children, also once they outlive it."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"VAR_DIR={self.var_dir}".encode() in environ and command in cmdline:
                found.append(int(entry.name))
        return found

    def _serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"scripts/run exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        if "Platform running at" not in self.log():
            return False
        try:
            return self.call("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        path = self.var_dir.parent / f"run-{self.runs}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):  # anything of this run left behind
                os.killpg(self.process.pid, signal.SIGKILL)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        try:
            return self._call(method, path, body, token)
        except (ConnectionResetError, http.client.RemoteDisconnected):
            # gunicorn kills a worker stuck past its timeout (30 s; on a loaded machine the
            # embedded chain's first deployment holds SQLite's write lock for long): say so,
            # and repeat a request that changes nothing once.
            web_log = (self.var_dir / "log" / "web.log").read_text(errors="replace")[-2000:]
            if method != "GET" and path != "/api/auth/token":
                raise AssertionError(f"{method} {path}: connection lost; web.log:\n{web_log}") from None
            print(f"{method} {path}: connection lost, repeated once; web.log:\n{web_log}")
            return self._call(method, path, body, token)

    def _call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = connection.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw.startswith((b"{", b"[")) else raw
        finally:
            connection.close()

    def token(self, username: str) -> str:
        status, body = self.call("POST", "/api/auth/token", {"username": username, "password": PASSWORD})
        assert status == 200, body
        return str(body["access"])


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    var_dir = tmp_path / "var"
    env = {key: value for key, value in os.environ.items() if key not in TEST_ONLY}
    env |= {"VAR_DIR": str(var_dir), "PORT": str(free_port()), "WEB_WORKERS": "2", "DEMO_PASSWORD": PASSWORD}
    platform = Platform(port=int(env["PORT"]), var_dir=var_dir, env=env)
    yield platform
    if platform.process is not None and platform.process.poll() is None:
        platform.stop()


def _order(side: str, price: str, client_order_id: str) -> dict[str, str]:
    return {"market": "ETH-USDT", "side": side, "type": "limit", "price": price, "quantity": "0.25",
            "client_order_id": client_order_id}  # fmt: skip


# One platform through three runs (each start is most of this file's time: migrate, static
# files, the engine, the seed): a SIGTERM stop and a start again (issue 19), a process killed
# while it runs, then scripts/run itself killed outright and the next start.
@pytest.mark.timeout(900)
def test_the_platform_survives_stops_kills_and_starts_again(platform: Platform) -> None:
    _trade_and_move_prices_then_start_again(platform)
    _a_killed_process_is_started_again_and_the_rest_serves_on(platform)
    _a_run_whose_script_was_killed_outright_is_stopped_by_the_next(platform)
    platform.stop()
    wait_until(lambda: not platform.processes(), what="no process of the run left", timeout=60)


def _trade_and_move_prices_then_start_again(platform: Platform) -> None:
    """Issue 19: a second start after a reference price change crashed in seed_demo with
    DuplicateClientOrderId, before serving."""
    platform.start()
    assert "Demo data ready: 30 resting orders placed" in platform.log()
    carol, alice = platform.token("carol"), platform.token("alice")
    # carol lifts alice's best ask (the demo's, at reference + 1.00): a trade.
    status, placed = platform.call("POST", "/api/orders", _order("buy", "2001.00", "restart-buy"), carol)
    assert status == 201 and placed["status"] == "filled", placed
    status, trades = platform.call("GET", "/api/trades", token=alice)
    assert status == 200 and len(trades["results"] if isinstance(trades, dict) else trades) == 1
    admin = platform.token("admin")
    for symbol, price in (("ETH-USDT", "2150.00"), ("BTC-USDT", "58000.00"), ("TTX-USDT", "0.0020")):
        body = {"price": price, "large_move": True}  # TTX-USDT: 0.50 -> 0.0020
        status, body = platform.call("POST", f"/api/admin/markets/{symbol}/reference-price", body, admin)
        assert status == 200, body
    platform.stop()
    wait_until(lambda: not platform.processes(), what="no process of the stopped run left", timeout=60)

    platform.start()  # the crash of issue 19 happened here, before serving
    assert "Demo data ready: 0 resting orders placed, 30 from an earlier run." in platform.log()
    status, markets = platform.call("GET", "/api/markets")
    assert status == 200
    listed = markets["results"] if isinstance(markets, dict) else markets
    prices = {m["symbol"]: Decimal(m["reference_price"]) for m in listed}
    assert (prices["ETH-USDT"], prices["TTX-USDT"]) == (Decimal("2150"), Decimal("0.002")), prices
    carol = platform.token("carol")
    status, orders = platform.call("GET", "/api/orders", token=carol)
    assert status == 200 and "restart-buy" in json.dumps(orders)
    # And it trades: carol places again on the restarted engine.
    status, placed = platform.call("POST", "/api/orders", _order("buy", "2000.00", "after-restart"), carol)
    assert status == 201, placed
    assert platform.call("GET", "/trade/ETH-USDT")[0] == 200


def test_a_stop_while_it_starts_stops_it_instead_of_serving_without_an_engine(platform: Platform) -> None:
    """A SIGTERM to scripts/run while it starts (a supervisor's stop, `kill`, make passing
    it on): the trap stopped the engine it had started, then the start went on: worker,
    beat and web started, "Platform running at" was printed and it kept running, every
    order answered 503 (engine down), until something else stopped it."""
    platform.launch()
    assert platform.process is not None
    wait_until(lambda: platform.processes("seed_demo"), what="seed_demo running", timeout=240, interval=0.02)
    platform.process.send_signal(signal.SIGTERM)  # scripts/run alone, not its children
    try:
        code = platform.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"scripts/run still running 90 s after SIGTERM; left: {platform.processes()}:\n{platform.log()[-1500:]}"
        )
    assert code != 0, platform.log()[-1500:]
    assert "Platform running at" not in platform.log()
    wait_until(lambda: not platform.processes(), what="no process of the run left", timeout=60)


def _a_run_whose_script_was_killed_outright_is_stopped_by_the_next(platform: Platform) -> None:
    """SIGKILL to scripts/run itself (an operator's kill -9, an OOM kill) leaves its engine,
    web, worker and beat running, orphaned. The next `make run` went on beside them: its
    engine stood by behind the old one's lock, its web could not bind the port (exit 3 after
    printing "Platform running"), and the old processes served on with nothing to stop them.
    It now stops what the last run left before it starts."""
    first = set(platform.processes())
    assert platform.process is not None
    try:
        platform.process.kill()
        platform.process.wait(timeout=10)
        assert platform.processes("manage.py engine"), "the engine of the killed run is not running"
        platform.start()
        left = first & set(platform.processes())
        assert not left, f"processes of the first run still running: {left}"
        status, placed = platform.call(
            "POST", "/api/orders", _order("buy", "1990.00", "after-a-kill"), platform.token("carol")
        )
        assert status == 201, placed
        assert platform.processes("manage.py engine")
    finally:
        for pid in first & set(platform.processes()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _a_killed_process_is_started_again_and_the_rest_serves_on(platform: Platform) -> None:
    """The engine (its watchdog ends it, or a kill) or the web's master killed: scripts/run
    ended, every other process with it (`wait -n`), and with the web master SIGKILLed its
    uvicorn workers served on, orphaned. Now the supervisor starts it again alone: orders
    answer 503 with Retry-After meanwhile, then trade again; the worker keeps its pid."""
    (engine,) = platform.processes("manage.py engine")
    (worker,) = platform.processes("celery -A config worker")
    carol = platform.token("carol")
    os.kill(engine, signal.SIGKILL)
    wait_until(lambda: engine not in platform.processes("manage.py engine"), what="the engine gone", timeout=10)
    status, answer = platform.call("POST", "/api/orders", _order("buy", "1980.00", "engine-down"), carol)
    assert status in (201, 503), answer  # 201 only if the engine came back first
    if status == 503:
        assert answer["error"]["code"] == "service_unavailable"

    def placed_again() -> bool:
        assert platform.process is not None and platform.process.poll() is None, platform.log()[-3000:]
        return platform.call("POST", "/api/orders", _order("buy", "1980.00", "engine-back"), carol)[0] in (200, 201)

    wait_until(
        placed_again, what="an order placed on the restarted engine", timeout=120, interval=0.5, ignoring=(OSError,)
    )
    assert platform.processes("celery -A config worker") == [worker]
    assert "engine.1 exited unasked (killed by SIGKILL)" in platform.log()

    (web,) = platform.processes("uvicorn config.asgi")
    web_workers = set(platform.processes("multiprocessing.spawn"))  # uvicorn's worker processes
    assert web_workers
    os.kill(web, signal.SIGKILL)
    wait_until(
        lambda: not web_workers & set(platform.processes()),
        what="the killed master's workers gone (they served on, orphaned, holding the port)",
        timeout=60,
    )
    wait_until(
        lambda: platform.call("GET", "/healthz")[0] == 200,
        what="the web serving again",
        timeout=120,
        ignoring=(OSError,),
    )
    (restarted,) = platform.processes("uvicorn config.asgi")
    assert restarted != web
    assert platform.processes("celery -A config worker") == [worker]
