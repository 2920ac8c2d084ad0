"""Fixtures of the deployment tests: the reliability tests' rig (real PostgreSQL
databases, a private Redis, anvil; every process stopped and every database dropped at
the end, also on failure)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import Rig


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with contextlib.ExitStack() as stack:
        yield Rig(stack, tmp_path, tag=request.node.name.removeprefix("test_"))
