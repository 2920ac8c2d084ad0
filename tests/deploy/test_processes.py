"""The web tier's default shape (config.processes): gunicorn's worker count and the order
rate's share per web process (ORDER_RATE_WORKERS, config/settings/base.py) come from one
definition."""

from __future__ import annotations

import importlib
import os

import pytest

from config import processes


def test_web_workers_default_to_one_per_core_and_follow_web_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_WORKERS", raising=False)
    assert processes.cores() == len(os.sched_getaffinity(0)) >= 1
    assert processes.web_workers() == processes.cores()
    monkeypatch.setenv("WEB_WORKERS", "3")
    assert processes.web_workers() == 3


def test_gunicorn_runs_that_many_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_WORKERS", raising=False)
    gunicorn_config = importlib.reload(importlib.import_module("config.gunicorn"))
    assert gunicorn_config.workers == processes.cores()
    monkeypatch.setenv("WEB_WORKERS", "5")
    assert importlib.reload(gunicorn_config).workers == 5
    monkeypatch.delenv("WEB_WORKERS")
    importlib.reload(gunicorn_config)
