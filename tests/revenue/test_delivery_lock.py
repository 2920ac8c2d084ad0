"""The one-sender lock's SQLite half across processes (revenue.delivery.lock): a file lock
beside the database file. Only a lock of the process held before: another process's cycle
or redeploy ran beside a running one. The PostgreSQL advisory lock:
tests/revenue/test_delivery_service.py::test_one_sender_on_postgres."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from revenue.delivery.lock import delivery_lock_path, file_lock

ROOT = Path(__file__).resolve().parents[2]
# Another process (a second worker, a chain_deploy run by hand) taking the lock at argv[1].
OTHER_PROCESS = """
import sys, time
from pathlib import Path
from revenue.delivery.lock import file_lock
with file_lock(Path(sys.argv[1])) as held:
    print("held" if held else "busy", flush=True)
    time.sleep(60)
"""


def other_process_holding(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    command = [sys.executable, "-c", OTHER_PROCESS, str(path)]
    other = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert other.stdout is not None and other.stdout.readline().strip() == "held"
    return other


def test_a_lock_another_process_holds_is_busy_until_that_process_dies(tmp_path):
    path = tmp_path / "db.sqlite3.delivery-lock"
    other = other_process_holding(path)
    try:
        with file_lock(path) as held:
            assert held is False
    finally:
        other.kill()
        other.wait(10)
    with file_lock(path) as held:  # the kernel let go of the killed process's lock
        assert held is True
        with file_lock(path) as again:  # one open file at a time, in this process too
            assert again is False


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/srv/var/db.sqlite3", Path("/srv/var/db.sqlite3.delivery-lock")),
        (":memory:", None),
        ("file:memorydb_default?mode=memory&cache=shared", None),
        ("", None),
    ],
)
def test_the_lock_file_is_beside_a_database_file(monkeypatch, name, expected):
    monkeypatch.setitem(connection.settings_dict, "NAME", name)
    assert delivery_lock_path() == expected
