"""Correlation ids: one id follows a request (or a fee, through its post-trade job,
revenue event and chain transaction) across log lines."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

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
            record.correlation_id = _correlation_id.get()
        return True


def adopt_correlation_id(correlation_id: str | None) -> None:
    """For a worker's task: continue the publisher's correlation id (or start one)."""
    _correlation_id.set(correlation_id or correlation_id_new())
