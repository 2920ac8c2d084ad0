"""X-Forwarded-For / X-Forwarded-Proto through the real web servers, started from the
Procfiles' `web` lines: gunicorn with the platform's uvicorn worker (Procfile, production
settings) and uvicorn itself (Procfile.local, `make run`). Django's test client never goes
through uvicorn, whose own proxy-header handling believed any loopback client and rewrote
the peer and the scheme before TrustedProxyMiddleware ran: from 127.0.0.1 a forged header
was a fresh address for every limit (failed logins, registrations, the metrics
allow-list) and made the request https. TRUSTED_PROXIES alone decides (docs/security.md)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.infra import ROOT, free_port, python, stop_process
from config import topology
from tests.migrated import sqlite_migrated
from tests.waiting import wait_until

pytestmark = pytest.mark.reliability

# What must not leak from the test run into the servers.
TEST_ONLY = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG")
PASSWORD = "right-password-2026"
HTTPS_COUNT = 'django_http_requests_total_by_transport_total{transport="https"}'


@dataclass(frozen=True)
class Line:
    """A Procfile's web line and the settings its Procfile runs it with."""

    procfile: str
    env: dict[str, str]
    database_url: bool = False  # production requires DATABASE_URL; local finds VAR_DIR's SQLite


# Production on the run's SQLite file: the settings that believe a trusted proxy's
# X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER); plain http is served (no redirect) so that
# what Django took the request for shows in /metrics.
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "proxy-headers-test-" + "k" * 48,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
    "METRICS_ALLOWED_NETWORKS": "127.0.0.0/8",
}
LINES = {
    "gunicorn": Line("Procfile", PRODUCTION, database_url=True),
    "uvicorn": Line("Procfile.local", {"DJANGO_SETTINGS_MODULE": "config.settings.local"}),
}


@dataclass
class Web:
    port: int

    def request(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        """Status, headers (lower-case names), body."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            payload = json.dumps(body) if body is not None else None
            connection.request(method, path, payload, {"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            answer = {name.lower(): value for name, value in response.getheaders()}
            return response.status, answer, response.read().decode()
        finally:
            connection.close()

    def metrics_status(self, **headers: str) -> int:
        return self.request("GET", "/metrics", headers)[0]

    def https_requests(self) -> float:
        """Requests Django took for https (django-prometheus counts them by transport)."""
        _, _, text = self.request("GET", "/metrics", {})
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(HTTPS_COUNT + " ")]
        return sum(values)

    def register_remaining(self, username: str, forwarded_for: str) -> int:
        status, headers, body = self.request(
            "POST",
            "/api/auth/register",
            {"X-Forwarded-For": forwarded_for},
            {"username": username, "password": PASSWORD},
        )
        assert status == 201, body
        return int(headers["ratelimit-remaining"])


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database (VAR_DIR's) for every server of the module."""
    path = tmp_path_factory.mktemp("proxy_headers") / "var"
    (path / "log").mkdir(parents=True)
    sqlite_migrated(path / "db.sqlite3", env=_env(path, {"DJANGO_SETTINGS_MODULE": "config.settings.local"}))
    return path


def _env(var_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in TEST_ONLY}
    return env | {
        "VAR_DIR": str(var_dir),
        "BIN": str(Path(python()).parent),
        "WEB_WORKERS": "1",
        "REGISTER_RATE_LIMIT": "100/hour",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@contextmanager
def served(var_dir: Path, line: Line, *, trusted_proxies: str = "") -> Iterator[Web]:
    """The Procfile's web line, as honcho runs it (a shell, PORT in the environment)."""
    web = Web(port=free_port())
    command = topology.procfile_processes(ROOT / line.procfile)["web"]
    env = _env(var_dir, {**line.env, "PORT": str(web.port), "TRUSTED_PROXIES": trusted_proxies})
    if line.database_url:
        env["DATABASE_URL"] = f"sqlite:///{var_dir / 'db.sqlite3'}"
    log_path = var_dir / "log" / f"{line.procfile}.out"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
    try:
        wait_until(
            lambda: process.poll() is None and web.request("GET", "/api/time", {})[0] == 200,
            what=f"{line.procfile}'s web line to answer (its output: {var_dir / 'log'})",
            timeout=90,
            interval=0.2,
            ignoring=(OSError,),
        )
        yield web
    finally:
        stop_process(process, timeout=30)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("server", list(LINES))
def test_a_client_on_loopback_cannot_forge_its_address_or_https(var_dir: Path, server: str) -> None:
    with served(var_dir, LINES[server]) as web:
        # The metrics allow-list sees 127.0.0.1, not the forged address (was 403).
        assert web.metrics_status(**{"X-Forwarded-For": "8.8.8.8"}) == 200
        # One registration budget for the connection, whatever address each request names
        # (was a fresh budget per forged address).
        first = web.register_remaining(f"{server}forged1", "9.9.9.1")
        assert web.register_remaining(f"{server}forged2", "9.9.9.2") == first - 1
        # Plain http stays http (uvicorn made it https: secure cookies, https links).
        before = web.https_requests()
        assert web.request("GET", "/api/time", {"X-Forwarded-Proto": "https"})[0] == 200
        assert web.https_requests() == before


@pytest.mark.timeout(240)
@pytest.mark.parametrize("server", list(LINES))
def test_behind_trusted_proxies_the_forwarded_client_is_believed(var_dir: Path, server: str) -> None:
    with served(var_dir, LINES[server], trusted_proxies="127.0.0.1") as web:
        assert web.metrics_status() == 200
        assert web.metrics_status(**{"X-Forwarded-For": "8.8.8.8"}) == 403  # the proxy's client
        first = web.register_remaining(f"{server}proxied1", "9.9.9.3")
        assert web.register_remaining(f"{server}proxied2", "9.9.9.4") == first  # two clients, two budgets
        if server == "gunicorn":  # production believes the proxy's X-Forwarded-Proto
            before = web.https_requests()
            assert web.request("GET", "/api/time", {"X-Forwarded-Proto": "https"})[0] == 200
            assert web.https_requests() == before + 1
