"""The web tier's default shape, one definition for gunicorn's configuration
(config/gunicorn.py), the order rate's share per web process (ORDER_RATE_WORKERS) and the
benchmark; scripts/run's `nproc` counts the same cores."""

from __future__ import annotations

import os


def cores() -> int:
    """The cores this process may run on (its CPU affinity, as `nproc` counts them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def web_workers() -> int:
    """WEB_WORKERS, else one uvicorn worker per core: each is an event loop that awaits the
    engine's answers rather than blocking on them, so processes beyond the cores only add
    CPU per answer (on two cores, two workers against four: 0.50 against 0.58-0.60 ms of
    web CPU per answer and 2.5-3.8% more orders a second; docs/performance.md)."""
    return int(os.environ.get("WEB_WORKERS") or cores())
