"""Fixtures of the reliability tests: a rig that starts real services for one test and
always stops them, and the figures file each test writes."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import Figures, Rig


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: load and fault tests against real services")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report  # the figures fixture reads the test's outcome
    return report


CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with contextlib.ExitStack() as stack:
        yield Rig(stack, tmp_path, tag=request.node.name.removeprefix("test_"))
    report = request.node.stash.get(CALL_REPORT, None)
    if report is not None and report.failed:
        # CI keeps only its output: what the processes logged goes with the failure.
        print(logs_noteworthy(tmp_path))


NOTEWORTHY = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|answered 503|refused|timed out", re.IGNORECASE)


def logs_noteworthy(workdir: Path, *, per_log: int = 40) -> str:
    """The last warning and error lines of each process's log in `workdir`."""
    parts = []
    for path in sorted(workdir.rglob("*.log")):
        lines = [line for line in path.read_text(errors="replace").splitlines() if NOTEWORTHY.search(line)]
        parts.append(f"== {path.name}: {len(lines)} noteworthy lines, the last {per_log}")
        parts.extend(line[:400] for line in lines[-per_log:])
    return "\n".join(parts)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    found = Figures(request.node.name)
    yield found
    report = request.node.stash.get(CALL_REPORT, None)
    # A skipped test measured nothing: it must not overwrite the last run's figures.
    if report is not None and not report.skipped:
        found.write()
