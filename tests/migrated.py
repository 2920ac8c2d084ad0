"""Migrated databases for the processes tests start, copied from a template migrated once per
schema: `migrate` costs 5-8 s of a core each time, and CI's 20 minutes count them."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def schema_key(*extra: str) -> str:
    """What a migrated database depends on: the project's migrations, the installed
    distributions (their versions name the migrations they ship) and `extra` (the settings)."""
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    site_packages = Path(sysconfig.get_paths()["purelib"])
    digest.update("\0".join(sorted(path.name for path in site_packages.glob("*.dist-info"))).encode())
    digest.update("\0".join(extra).encode())
    return digest.hexdigest()[:16]


def sqlite_migrated(path: Path, *, env: dict[str, str]) -> None:
    """Writes at `path` the SQLite database `manage.py migrate` would make under `env` (its
    settings module, no DATABASE_URL: VAR_DIR's database), copied from a template that the
    first process to need it migrates (the others wait on a file lock)."""
    if env.get("DATABASE_URL"):
        raise ValueError("sqlite_migrated makes VAR_DIR's SQLite database: env must not name another")
    templates = Path(tempfile.gettempdir()) / f"platform-test-templates-{os.getuid()}"
    templates.mkdir(exist_ok=True)
    template = templates / f"{schema_key(env.get('DJANGO_SETTINGS_MODULE', ''))}.sqlite3"
    with open(templates / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            var_dir = Path(tempfile.mkdtemp(dir=templates))
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=ROOT,
                env={**env, "VAR_DIR": str(var_dir)},
                check=True,
                capture_output=True,
                timeout=300,
            )
            _sqlite_copy(var_dir / "db.sqlite3", template.with_suffix(".partial"))
            template.with_suffix(".partial").rename(template)  # complete or absent
            shutil.rmtree(var_dir, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sqlite_copy(template, path)


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy whatever the source's journal (WAL) holds."""
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)
    origin.close()
    copy.close()
