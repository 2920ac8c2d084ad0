"""Flake hunt: run chosen test folders N times on PostgreSQL, as CI runs them (`-n 2`,
CI=true so a missing service fails), and print every test that failed at least once
with its count. Each repetition is a whole pytest session (session fixtures such as the
anvil node start again), so start-up races are hunted too.

    make flake-hunt RUNS=5 FOLDERS="tests/revenue"
    .venv/bin/python scripts/flake_hunt.py --runs 2 tests/reliability

The summary is also written to var/flake-hunt/<timestamp>.json (docs/reliability.md
cites it). Exit status 1 when any test failed in any run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/platform"


def failed_tests(report: Path) -> tuple[list[str], Counter[str]]:
    """Test ids that failed or errored in one junit report, and the outcome counts."""
    outcomes: Counter[str] = Counter()
    failed = []
    if not report.exists():
        return ["<no report: pytest crashed>"], outcomes
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own file
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed.append(name)
            outcomes["failed"] += 1
        elif "skipped" in kinds:
            outcomes["skipped"] += 1
        else:
            outcomes["passed"] += 1
    return failed, outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="test folders or files")
    parser.add_argument("--runs", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--workers", default=os.environ.get("TEST_WORKERS", "2"), help="pytest -n (default 2, as CI)")
    args, pytest_args = parser.parse_known_args()

    env = dict(os.environ)
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    env.setdefault("CI", "true")
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    if not env["DATABASE_URL"].startswith("postgres"):
        print("the flake hunt runs on PostgreSQL: DATABASE_URL must be postgres://...", file=sys.stderr)
        return 2

    out = ROOT / "var" / "flake-hunt"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    failures: Counter[str] = Counter()
    runs = []
    for run in range(1, args.runs + 1):
        report = out / f"{stamp}-run{run}.xml"
        began = time.monotonic()
        command = [
            str(ROOT / ".venv" / "bin" / "pytest"),
            "-n",
            str(args.workers),
            "-q",
            f"--junitxml={report}",
            *pytest_args,
            *args.folders,
        ]
        completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)  # noqa: S603
        seconds = round(time.monotonic() - began, 1)
        failed, outcomes = failed_tests(report)
        if completed.returncode != 0 and not failed:
            failed = [f"<pytest exited {completed.returncode} with no failed test: see its output>"]
        failures.update(failed)
        runs.append({"run": run, "exit": completed.returncode, "seconds": seconds, **outcomes, "failed_tests": failed})
        print(
            f"[flake-hunt] run {run}/{args.runs}: exit {completed.returncode}, {outcomes['passed']} passed, "
            f"{outcomes['skipped']} skipped, {outcomes['failed']} failed, {seconds} s",
            flush=True,
        )
        if failed:
            print(completed.stdout[-6000:], flush=True)

    summary = {
        "folders": args.folders,
        "runs": args.runs,
        "workers": args.workers,
        "started": stamp,
        "per_run": runs,
        "failed_at_least_once": dict(failures.most_common()),
    }
    (out / f"{stamp}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[flake-hunt] {args.runs} runs of {' '.join(args.folders)}")
    if not failures:
        print("[flake-hunt] no test failed in any run")
        return 0
    print("[flake-hunt] tests that failed at least once (count of runs):")
    for name, count in failures.most_common():
        print(f"  {count}/{args.runs}  {name}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
