"""Correlation ids: one id follows a request (or a fee, through its post-trade job,
revenue event and chain transaction) across log lines."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_correlation_id: ContextVar[str] = ContextVar("correlation_id", default="-")


def correlation_id_get() -> str:
    return _correlation_id.get()


def correlation_id_new() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def correlation_context(correlation_id: str | None) -> Iterator[str]:
    token = _correlation_id.set(correlation_id or correlation_id_new())
    try:
        yield _correlation_id.get()
    finally:
        _correlation_id.reset(token)


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            found = _correlation_id.get()
            if found == "-":
                # Django logs a 4xx/5xx answer (`django.request`) once the middleware chain
                # has returned, outside the request's context: the request still names it.
                found = getattr(getattr(record, "request", None), "correlation_id", found)
            record.correlation_id = found
        return True


class SecretPathFilter(logging.Filter):
    """Django's own lines of a 4xx/5xx answer (`django.request`, `django.security.csrf`:
    "Forbidden (CSRF cookie not set.): /account/password/reset/NA/<token>") write the
    request's whole path, and the request itself (its repr names the path again): a password
    reset link's token, which sets the account's password until used, went into the logs
    whenever its page answered 4xx (a CSRF failure, a throttle) or 503. The path is written
    as the request line writes it (core.middleware.logged_path: `[redacted]`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        path = getattr(request, "path", None)
        if not isinstance(path, str):
            return True
        from core.middleware import logged_path  # Django's: loaded once a request is logged

        safe = logged_path(request, unresolved_too=True)  # type: ignore[arg-type]
        if safe != path:
            record.msg = record.getMessage().replace(path, safe)
            record.args = None
            record.request = f"<{type(request).__name__}: {getattr(request, 'method', '')} {safe!r}>"
        return True


class NotServiceUnavailable(logging.Filter):
    """For the admins' mail (Django's AdminEmailHandler, config/settings/base.py): not
    Django's record of a 503 answer. A 503 is the platform's answer to an outage it knows
    and alerts (no engine answering: PlatformEngineDown, /healthz; the database away), sent
    with Retry-After to every client retrying meanwhile: an error report each was a storm
    of mails for each engine restart, rendered in the request (~6 ms each, on the event
    loop of core.api.fast's placements). Such answers are still logged and counted."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 503


def adopt_correlation_id(correlation_id: str | None) -> None:
    """For a worker's task: continue the publisher's correlation id (or start one)."""
    _correlation_id.set(correlation_id or correlation_id_new())


def correlation_id_clear() -> None:
    """For a worker once its task has ended: what it logs next (the next message received,
    a lost broker connection) belongs to no request."""
    _correlation_id.set("-")


class LinesEvery:
    """At most one log line per key every `seconds` for a failure that recurs (a cache or a
    relay that is down): `due(key)` counts one occurrence and, when a line is due, returns
    how many there were since the last one (else None). An outage must not flood the log."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def due(self, key: str) -> int | None:
        with self._lock:
            self._since[key] = self._since.get(key, 0) + 1
            now = time.monotonic()
            if now - self._last.get(key, -self.seconds) < self.seconds:
                return None
            self._last[key] = now
            return self._since.pop(key)

    def reset(self) -> None:
        """Forget every key (tests: the next occurrence is logged)."""
        with self._lock:
            self._last.clear()
            self._since.clear()


# --- configuration shared by every process ------------------------------------------------
# Django's LOGGING (config/settings/base.py), the Celery worker and beat (config/celery.py
# hands their logging to it), gunicorn's own loggers (config/gunicorn.py) and the engine
# (a Django command) all log through this: with LOG_FORMAT=json every line of every
# process is one JSON object with `time`, `level`, `logger`, `correlation_id`, `message`
# and the record's extra fields.

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(correlation_id)s %(message)s"
LOG_FORMATS = ("text", "json")


def logging_config(*, log_format: str, level: str, loggers: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A logging.config.dictConfig document: one handler on stderr, the correlation id on
    every record, text or JSON lines."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "correlation": {"()": "core.logging.CorrelationIdFilter"},
            "secret_paths": {"()": "core.logging.SecretPathFilter"},
        },
        "formatters": {
            "text": {"format": TEXT_FORMAT},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "format": JSON_FIELDS,
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                # correlation first: it reads the request's id before secret_paths writes it as text
                "filters": ["correlation", "secret_paths"],
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": dict(loggers or {}),
    }
