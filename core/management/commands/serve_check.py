"""manage.py serve_check: refuse to start the production topology (scripts/serve) on
settings that would not deliver: PostgreSQL, Redis as broker and cache, a chain node,
DEBUG off, the engine as its own processes, metrics shared by the processes, the web's
address free (core/ports.py), VAR_DIR this platform's own, and what the apps register
(serve_check_register: the engines' shards cover every market once). Every
problem is listed, then it exits non-zero; the services are reached, not only named. Once
everything passed, VAR_DIR is claimed for this platform (var_dir_claim)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError

from core.health import broker_reachable, database_reachable, serve_checks
from core.metrics import multiprocess_dir
from core.platform import database_digest
from core.ports import bind_problem, web_bind

# Read outside the settings (the supervisor, gunicorn's configuration, the Procfile, Django
# and prometheus_client themselves): not typos.
ENV_NAMES_READ_ELSEWHERE = (
    "BIN",
    "DEMO_PASSWORD",
    "DJANGO_SETTINGS_MODULE",
    "ENGINE_SHARD",
    "HONCHO_PROCESS_NAME",
    "LOG_FILE_MAX_BYTES",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "PLATFORM_KEY_PREFIX",
    "PORT",
    "PROMETHEUS_MULTIPROC_DIR",
    "SERVE_RESTART_MAX_DELAY",
    "SERVE_STOP_TIMEOUT",
    "TOPOLOGY_LOG_DIR",
    "TOPOLOGY_PIDS_FILE",
    "WEB_ACCESS_LOG",
    "WEB_BIND",
    "WEB_GRACEFUL_TIMEOUT",
    "WEB_THREADS",
    "WEB_TIMEOUT",
    "WEB_WORKERS",
    "WORKER_CONCURRENCY",
)


def env_names_mistyped(environ: Iterable[str], *, known: Iterable[str]) -> list[tuple[str, str]]:
    """Of the variables set (`environ`), those nothing reads that are a near miss of one
    that is read (`known`): (the name set, the name meant). `DELIVERY_ENABLE=0` or
    `ENGINE_SHARDSS=...` was ignored without a word, the platform running on the default.
    A name far from every known one is someone else's (PATH, Django's and Celery's own)."""
    names = sorted(set(known))
    mistyped = []
    for name in sorted(set(environ) - set(names)):
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.85)
        if close:
            mistyped.append((name, close[0]))
    return mistyped


def serve_settings_problems() -> list[str]:
    """What is wrong with the settings for the production topology (empty: nothing)."""
    problems = []
    if settings.DEBUG:
        problems.append("DEBUG is on: use DJANGO_SETTINGS_MODULE=config.settings.production")
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        problems.append("DATABASE_URL must point at PostgreSQL (postgres://...)")
    if not str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://")):
        problems.append("CELERY_BROKER_URL must point at Redis (redis://...)")
    if not str(settings.REDIS_URL).startswith(("redis://", "rediss://")):
        problems.append("REDIS_URL must point at Redis (redis://...): the cache every process shares")
    if not settings.WEB3_PROVIDER_URI:
        problems.append(
            "WEB3_PROVIDER_URI is empty: the embedded chain cannot live in the production workers; "
            "point it at a chain node"
        )
    if "*" in settings.ALLOWED_HOSTS:
        problems.append(
            "DJANGO_ALLOWED_HOSTS holds '*': name the site's hosts (password reset links are built from the"
            " request's Host, which '*' lets anyone choose)"
        )
    if settings.ENGINE_TRANSPORT != "zmq":
        problems.append("ENGINE_TRANSPORT must be zmq: the engines run as their own processes")
    directory = multiprocess_dir()
    if not directory:
        problems.append("PROMETHEUS_MULTIPROC_DIR is not set: /metrics would show one process's counters")
    elif not os.path.isdir(directory):
        problems.append(f"PROMETHEUS_MULTIPROC_DIR={directory} is not a directory")
    known = (*getattr(settings, "ENV_NAMES_READ", ()), *ENV_NAMES_READ_ELSEWHERE)
    for name, meant in env_names_mistyped(os.environ, known=known):
        problems.append(f"{name} is set but nothing reads it: a typo of {meant}?")
    return problems


# Written in VAR_DIR by the first `scripts/serve` of a platform: the digest of its database,
# then the database's name, for the operator.
VAR_DIR_OWNER = "platform"


def _var_dir_owner() -> tuple[Path, str, str]:
    database = settings.DATABASES["default"]
    return Path(settings.VAR_DIR) / VAR_DIR_OWNER, database_digest(database), str(database.get("NAME") or "")


def var_dir_problem() -> str | None:
    """VAR_DIR is another platform's: two platforms run from one checkout with VAR_DIR
    unset share its engine sockets (ipc://: the second engine's bind takes the path over,
    and the first platform's web workers that connect from then on send their orders to the
    other platform's engine), its metrics directory (emptied by the other's start) and its
    logs."""
    marker, ours, _ = _var_dir_owner()
    try:
        recorded = marker.read_text().split()
    except FileNotFoundError:
        return None
    if recorded and recorded[0] == ours:
        return None
    other = " ".join(recorded[1:]) or "?"
    return (
        f"VAR_DIR={settings.VAR_DIR} is another platform's (its database: {other}): its engine sockets, metrics"
        f" and logs would be shared; set VAR_DIR for this one (or, if this platform's database was renamed,"
        f" delete {marker})"
    )


def var_dir_claim() -> None:
    marker, ours, name = _var_dir_owner()
    marker.parent.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        marker.write_text(f"{ours} {name}\n")


def cache_reachable() -> bool:
    try:
        cache.set("serve_check", 1, timeout=5)
        return cache.get("serve_check") == 1
    except Exception:  # any failure means "not reachable"
        return False


class Command(BaseCommand):
    help = "Check the settings and services of the production topology (scripts/serve runs it first)."

    def handle(self, *args: Any, **options: Any) -> None:
        problems = serve_settings_problems()
        if not problems:
            if not database_reachable():
                problems.append("PostgreSQL does not answer at DATABASE_URL")
            if not broker_reachable():
                problems.append("Redis does not answer at CELERY_BROKER_URL")
            if not cache_reachable():
                problems.append("Redis does not answer at REDIS_URL")
            address_problem = bind_problem(web_bind())
            if address_problem:
                problems.append(f"{address_problem} The web binds WEB_BIND, else 127.0.0.1:$PORT")
            owner_problem = var_dir_problem()
            if owner_problem:
                problems.append(owner_problem)
            if not problems:
                for check in serve_checks():
                    problems += check()
        if problems:
            raise CommandError("the production topology cannot start:\n  - " + "\n  - ".join(problems))
        var_dir_claim()
        self.stdout.write("settings: PostgreSQL, Redis, chain node, DEBUG off, metrics directory: ok")
