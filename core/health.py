"""What /healthz reports: the database and the broker, which core reaches itself, and the
checks later apps register (the chain, the engines): core never imports those apps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import current_app as app
from django.db import connection

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


def broker_reachable() -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        return True
    except Exception:
        logger.warning("broker health check failed", exc_info=True)
        return False
