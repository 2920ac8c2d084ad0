"""What /healthz reports: the database and the broker, which core reaches itself, and the
checks later apps register (the chain, the engines): core never imports those apps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import current_app as app
from django.db import DatabaseError, connection
from django.db.models import Max
from django.utils import timezone

from core.logging import LinesEvery

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    name: str
    report: Callable[[], Any]  # the value /healthz writes under `name`
    healthy: Callable[[Any], bool]  # whether that value leaves the platform healthy


_checks: dict[str, HealthCheck] = {}


def health_check_register(name: str, report: Callable[[], Any], *, healthy: Callable[[Any], bool]) -> None:
    """An app's check, registered in its AppConfig.ready(); registering a name again replaces it."""
    _checks[name] = HealthCheck(name=name, report=report, healthy=healthy)


def health_checks() -> list[HealthCheck]:
    """The registered checks in name order: the answer does not depend on INSTALLED_APPS' order."""
    return [_checks[name] for name in sorted(_checks)]


_serve_checks: dict[str, Callable[[], list[str]]] = {}


def serve_check_register(name: str, problems: Callable[[], list[str]]) -> None:
    """An app's check of its settings for the production topology (`manage.py serve_check`,
    once the database answers), registered in its AppConfig.ready(): what it answers is
    listed among the problems that stop scripts/serve. Registering a name again replaces it."""
    _serve_checks[name] = problems


def serve_checks() -> list[Callable[[], list[str]]]:
    return [_serve_checks[name] for name in sorted(_serve_checks)]


def database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # any failure means "not reachable"; the reason is logged
        logger.warning("database health check failed", exc_info=True)
        return False


# /healthz (a load balancer's probe every few seconds) and each scrape of /metrics ask the
# broker: during an outage, one line (with its traceback) per 10 s and process, not per ask.
BROKER_FAILURE_LINES = LinesEvery(10.0)


def broker_reachable() -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        return True
    except Exception:
        if (failures := BROKER_FAILURE_LINES.due("broker")) is not None:
            logger.warning("broker health check failed (%s time(s) since the last such line)", failures, exc_info=True)
        return False


# Beat sends the post-trade sweep every 30 s, the other periodic tasks every minute or hour,
# and its scheduler writes their last runs to the database every 30 s (core.beat): nothing
# sent for this long, beat is not running (stopped, hung, its host gone). Alert
# PlatformBeatStalled reads the same time (docs/operations.md, "Health and metrics").
BEAT_STALLED_SECONDS = 600


def beat_last_sent_at() -> datetime | None:
    """When beat last sent a periodic task, as its scheduler wrote it (None: never)."""
    from django_celery_beat.models import PeriodicTask  # a model: read once the apps are loaded

    last: datetime | None = PeriodicTask.objects.aggregate(last=Max("last_run_at"))["last"]
    return last


def beat_report() -> dict[str, Any]:
    """/healthz's `beat`: `ok`, `stalled` (nothing sent for BEAT_STALLED_SECONDS) or `never`
    (a database beat has not yet served: a fresh one, a test's), with how long ago it last
    sent a task. The delivery heartbeat cannot say it: each trade's events start a delivery
    run of their own, so with trades going on the heartbeat stayed fresh whatever beat did."""
    try:
        last = beat_last_sent_at()
    except DatabaseError:  # the database's own entry says so
        return {"status": "unknown", "last_sent_s": None}
    if last is None:
        return {"status": "never", "last_sent_s": None}
    age = max((timezone.now() - last).total_seconds(), 0.0)
    return {"status": "stalled" if age > BEAT_STALLED_SECONDS else "ok", "last_sent_s": round(age, 1)}


def beat_healthy(report: dict[str, Any]) -> bool:
    return report["status"] != "stalled"
