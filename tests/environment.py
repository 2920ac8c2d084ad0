"""What a test needs from the machine. CI installs everything (`.ci/run`), so a missing
tool or service fails there; on a developer's machine the test is skipped, saying why."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require(present: bool, message: str) -> None:
    if present:
        return
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
