"""Reachability of the database, the broker and the chain, for /healthz."""

from __future__ import annotations

import logging

from django.db import connection

logger = logging.getLogger(__name__)


def database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # any failure means "not reachable"; the reason is logged
        logger.warning("database health check failed", exc_info=True)
        return False


def broker_reachable() -> bool:
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
        return True
    except Exception:
        logger.warning("broker health check failed", exc_info=True)
        return False
