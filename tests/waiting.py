"""Waiting for something asynchronous in a test: a receipt, a block, a Celery task, a
process start, a socket. Never read once and never sleep a fixed time: poll the condition
until it holds, within a bound, and fail saying what was awaited and what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` until it returns a truthy value and return that value.

    ``ignoring``: exceptions that mean "not yet" (a refused connection while a process
    starts); the last one is reported on timeout. Anything else propagates at once.
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    last: object = None
    while True:
        attempts += 1
        try:
            value = condition()
        except ignoring as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s ({attempts} checks) waiting for {what}; last seen: {last!r}"
            )
        time.sleep(interval)
