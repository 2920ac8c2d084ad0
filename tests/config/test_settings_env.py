"""config.settings.env: a value that is not of its setting's type is refused at start, naming
its variable; a boolean's typo turned the setting off without a word."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import env_bool, env_int, env_names_read

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("ON", True), (" yes ", True), ("0", False), ("off", False)])
def test_the_words_of_a_boolean(monkeypatch, raw, value):
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env_bool("SOME_FLAG", not value) is value
    assert "SOME_FLAG" in env_names_read()


@pytest.mark.parametrize("raw", ["ture", "enabled", "y", "2"])
def test_a_boolean_that_is_none_is_refused(monkeypatch, raw):
    monkeypatch.setenv("SOME_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match=f"SOME_FLAG='{raw}' is not a boolean"):
        env_bool("SOME_FLAG", True)


def test_an_integer_that_is_none_names_its_variable(monkeypatch):
    monkeypatch.setenv("SOME_COUNT", "5s")
    with pytest.raises(ImproperlyConfigured, match="SOME_COUNT='5s' is not an integer"):
        env_int("SOME_COUNT", 1)


def test_an_integer_below_its_least_working_value_is_refused(monkeypatch):
    monkeypatch.setenv("SOME_COUNT", "0")
    with pytest.raises(ImproperlyConfigured, match="SOME_COUNT='0' is below its least working value, 1"):
        env_int("SOME_COUNT", 5, minimum=1)
    monkeypatch.setenv("SOME_COUNT", "1")
    assert env_int("SOME_COUNT", 5, minimum=1) == 1


@pytest.mark.parametrize("name", ["ENGINE_BATCH_MAX", "DELIVERY_LOG_SCAN_BLOCKS", "JWT_ACCESS_MINUTES"])
def test_production_refuses_a_setting_that_cannot_work(name):
    """ENGINE_BATCH_MAX=0: the engine read no command (every order 503); DELIVERY_LOG_SCAN_BLOCKS=0:
    every delivery cycle failed; JWT_ACCESS_MINUTES=0: every access token expired as issued."""
    result = _production_settings({name: "0"}, "print('started')")
    assert result.returncode != 0, result.stdout
    assert f"{name}='0' is below its least working value, 1" in result.stderr


def _production_settings(extra: dict[str, str], statement: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY="k" * 20 + "-a-long-random-looking-production-secret-value-0123456789",
        DJANGO_ALLOWED_HOSTS="exchange.example.com",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/platform",
        **extra,
    )
    script = f"import django; django.setup(); from django.conf import settings; {statement}"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_refuses_to_start_on_a_mistyped_boolean():
    """`DELIVERY_ENABLED=ture`: every process started with delivery off (and
    `DJANGO_SECURE_SSL_REDIRECT=flase` with the redirect off): nothing said so."""
    result = _production_settings({"DELIVERY_ENABLED": "ture"}, "print(settings.DELIVERY_ENABLED)")
    assert result.returncode != 0, result.stdout
    assert "DELIVERY_ENABLED='ture' is not a boolean" in result.stderr
