from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings.production", **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    result = _check(
        {
            "DJANGO_SECRET_KEY": "k" * 20 + "-a-long-random-looking-production-secret-value-0123456789",
            "DJANGO_ALLOWED_HOSTS": "exchange.example.com",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/platform",
        }
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_require_a_secret_key():
    result = _check({"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/platform"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
