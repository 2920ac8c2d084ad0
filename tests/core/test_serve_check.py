"""manage.py serve_check: scripts/serve refuses settings that would not deliver."""

from __future__ import annotations

import socket

import pytest
from django.core.management import CommandError, call_command

from core.management.commands import serve_check
from core.management.commands.serve_check import serve_settings_problems
from core.ports import bind_problem


def test_the_embedded_defaults_are_refused(monkeypatch, settings) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings.DEBUG = True
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.sqlite3")
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.REDIS_URL = ""
    settings.WEB3_PROVIDER_URI = ""
    settings.ENGINE_TRANSPORT = "inprocess"
    problems = " ".join(serve_settings_problems())
    for name in ("DEBUG", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "WEB3_PROVIDER_URI", "ENGINE_TRANSPORT"):
        assert name in problems
    assert "PROMETHEUS_MULTIPROC_DIR" in problems
    with pytest.raises(CommandError, match="cannot start"):
        call_command("serve_check")


def real_services_set(monkeypatch, settings, tmp_path) -> None:
    """The settings of a deployment on real services, every check passing."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings.DEBUG = False
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.REDIS_URL = "redis://127.0.0.1:6379/1"
    settings.WEB3_PROVIDER_URI = "http://127.0.0.1:8545"
    settings.ENGINE_TRANSPORT = "zmq"


def test_real_services_pass(monkeypatch, settings, tmp_path) -> None:
    real_services_set(monkeypatch, settings, tmp_path)
    assert serve_settings_problems() == []
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    assert serve_settings_problems() == [f"PROMETHEUS_MULTIPROC_DIR={tmp_path / 'missing'} is not a directory"]


def test_a_mistyped_variable_is_refused(monkeypatch, settings, tmp_path) -> None:
    """`DELIVERY_ENABLE=0` (meant: DELIVERY_ENABLED) or `ENGINE_SHARDSS=...` were ignored:
    the platform ran on the default, delivering, or with one engine for every market."""
    real_services_set(monkeypatch, settings, tmp_path)
    monkeypatch.setenv("DELIVERY_ENABLE", "0")
    monkeypatch.setenv("ENGINE_SHARDSS", "eth=ETH-USDT@tcp://10.0.0.5:5701")
    monkeypatch.setenv("DJANGO_COLORS", "nocolor")  # Django's own: far from every setting's name
    assert serve_settings_problems() == [
        "DELIVERY_ENABLE is set but nothing reads it: a typo of DELIVERY_ENABLED?",
        "ENGINE_SHARDSS is set but nothing reads it: a typo of ENGINE_SHARDS?",
    ]


def test_the_web_address_held_by_another_program_is_refused(monkeypatch, settings, tmp_path) -> None:
    """scripts/serve started every process, and gunicorn, unable to bind, exited and was
    started again in a loop while the engines and workers ran on."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(serve_check, "serve_settings_problems", list)
    monkeypatch.setattr(serve_check, "database_reachable", lambda: True)
    monkeypatch.setattr(serve_check, "broker_reachable", lambda: True)
    monkeypatch.setattr(serve_check, "cache_reachable", lambda: True)
    monkeypatch.setattr(serve_check, "serve_checks", list)  # the apps' own (no database here)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        monkeypatch.delenv("WEB_BIND", raising=False)
        monkeypatch.setenv("PORT", str(port))
        with pytest.raises(CommandError, match=f"Port {port} on 127.0.0.1 is in use by another program"):
            call_command("serve_check")
    call_command("serve_check")  # the same address, once the other program let it go


def test_bind_problem_reads_the_address_as_gunicorn_does() -> None:
    assert bind_problem("127.0.0.1:80a") == "PORT=80a is not a port number."
    assert bind_problem("127.0.0.1:70000") == "PORT=70000 is not a port number."
    assert bind_problem("unix:/run/platform.sock") is None


def test_any_host_is_refused(monkeypatch, settings, tmp_path) -> None:
    """A password reset link is built from the request's Host (accounts.tasks), as Django's
    are: with DJANGO_ALLOWED_HOSTS=*, anyone could ask a reset for a trader with
    `Host: attacker.example` and the trader's mail carried a link, its token live, to the
    attacker's site. The names of the site's hosts, subdomain patterns included, pass."""
    real_services_set(monkeypatch, settings, tmp_path)
    settings.ALLOWED_HOSTS = ["exchange.example.com", "*"]
    [problem] = serve_settings_problems()
    assert "DJANGO_ALLOWED_HOSTS" in problem
    settings.ALLOWED_HOSTS = ["exchange.example.com", ".exchange.example.com"]
    assert serve_settings_problems() == []


def test_another_platforms_var_dir_is_refused(monkeypatch, settings, tmp_path) -> None:
    """Staging started from production's checkout, VAR_DIR unset: the same var/ for both.
    Its engine bound production's ipc:// endpoint (the path taken over: production's web
    workers connecting from then on sent their orders to staging's engine) and scripts/serve
    emptied the metrics directory production's processes wrote in."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("serve_settings_problems", "database_reachable", "broker_reachable", "cache_reachable"):
        monkeypatch.setattr(serve_check, name, list if name == "serve_settings_problems" else lambda: True)
    monkeypatch.setattr(serve_check, "bind_problem", lambda address: None)
    monkeypatch.setattr(serve_check, "serve_checks", list)  # the apps' own (no database here)
    settings.VAR_DIR = tmp_path / "var"
    monkeypatch.setitem(settings.DATABASES["default"], "NAME", "platform_production")
    call_command("serve_check")  # production's first start claims its VAR_DIR
    call_command("serve_check")  # and starts again

    monkeypatch.setitem(settings.DATABASES["default"], "NAME", "platform_staging")
    with pytest.raises(CommandError, match="is another platform's \\(its database: platform_production\\)"):
        call_command("serve_check")
    settings.VAR_DIR = tmp_path / "staging"
    call_command("serve_check")  # a VAR_DIR of its own
