"""`python -m bench.ab`: two versions of the platform benchmarked in turn, A then B, for
`--pairs` pairs, and their figures side by side.

This machine's speed drifts by a third within an hour, and the same code's `orders_per_s`
varies by ~10% from one run to the next (docs/performance.md): only runs of the two versions
taken in turn, on the machine as it is at that moment, say anything. A is `--a-rev` (a git
revision, checked out in a worktree under var/bench/ab that shares this checkout's .venv and
node_modules, its engine modules compiled as `make install` compiles them, unless
`--a-env PLATFORM_COMPILE=0`) or, without it, this checkout; B is this checkout.
`--a-env`/`--b-env NAME=VALUE` (repeatable) set environment variables of one side's runs (a
setting switched off or on). Each run is `python -m bench --parts ... --database ...`; its JSON is kept in
var/bench/ab/<tag>-<A|B>-<pair>.json and the summary in var/bench/ab/<tag>.txt.

    python -m bench.ab --pairs 3 --parts api --a-rev HEAD~1
    python -m bench.ab --pairs 3 --parts api --a-env ENGINE_APPLY_ON_ARRIVAL=0"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.infra import ROOT
from bench.runner import REQUIRED_KEYS, TARGETS

# Keys where more is better (the benchmark's targets say which); every other key shown is
# better lower (times, CPU, memory).
HIGHER_IS_BETTER = frozenset(key for key, (comparison, _) in TARGETS.items() if comparison == ">=")
# Every key a full run reports, then what explains the throughput (CPU and time per answer);
# keys a run's parts did not measure are left out of the summary.
DEFAULT_KEYS = (
    *REQUIRED_KEYS,
    "engine_cpu_ms_per_request",
    "loadgen_cpu_ms_per_request",
    "outside_engine_ms_mean",
    "engine_batch_ms_mean",
    "machine_busy_percent",
)
# Not a comparison of the two versions: the machine's own state during each run.
NEUTRAL = frozenset({"pgbench_tps", "machine_busy_percent"})


def env_assignments(values: Sequence[str]) -> dict[str, str]:
    """NAME=VALUE strings as a mapping (a value may itself hold '=')."""
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep or not name:
            raise ValueError(f"expected NAME=VALUE, got {value!r}")
        pairs[name] = setting
    return pairs


def pairs_summary(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], *, keys: Sequence[str]) -> str:
    """A table: per key, A's and B's values in run order, in how many pairs B was better
    (or "-" for the machine's own figures), and the median of B / A over the pairs."""
    if len(a) != len(b):
        raise ValueError("A and B need as many runs each")
    lines = [f"{'key':<28} {'A':<34} {'B':<34} {'B better':>8} {'B/A':>6}"]
    for key in keys:
        pairs = [(x[key], y[key]) for x, y in zip(a, b, strict=True) if key in x and key in y]
        if not pairs:
            continue
        higher = key in HIGHER_IS_BETTER
        won = sum(1 for x, y in pairs if (y > x if higher else y < x))
        ratios = [y / x for x, y in pairs if x]
        median = f"{statistics.median(ratios):.3f}" if ratios else "-"
        better = "-" if key in NEUTRAL else f"{won}/{len(pairs)}"
        lines.append(
            f"{key:<28} {'/'.join(_short(x) for x, _ in pairs):<34} {'/'.join(_short(y) for _, y in pairs):<34} "
            f"{better:>8} {median:>6}"
        )
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--parts", default="api", help="as python -m bench --parts")
    parser.add_argument("--a-rev", default=None, help="git revision of A (default: this checkout)")
    parser.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--database", default="platform_bench_ab", help="must contain 'bench'")
    parser.add_argument("--tag", default="ab")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS))
    return parser.parse_args(argv)


def _worktree(rev: str, outdir: Path, *, env: dict[str, str]) -> Path:
    tree = outdir / f"tree-{rev.replace('/', '_')}"
    if tree.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True)
    for shared in (".venv", "node_modules"):
        if (ROOT / shared).exists():
            (tree / shared).symlink_to(ROOT / shared)
    _packages_shadowed(tree)
    if (tree / "scripts" / "compile.py").exists():
        # A runs as `make install` leaves it: its engine modules compiled (core/compiled.py)
        subprocess.run([sys.executable, "scripts/compile.py"], cwd=tree, env=env, check=True)
    return tree


def _packages_shadowed(tree: Path) -> None:
    """An empty package in `tree` for each of this checkout's packages it lacks: the editable
    install's finder maps the project's packages to this checkout, and an import the tree
    cannot satisfy fell through to it (an older A importing `flywheel.templatetags`, which it
    did not have, loaded this checkout's and failed on its imports)."""
    tops = [top for top in ROOT.iterdir() if (top / "__init__.py").exists()]  # the project's packages
    for init in (init for top in tops for init in top.glob("**/__init__.py")):
        package = init.parent.relative_to(ROOT)
        if not (tree / package).exists():
            (tree / package).mkdir(parents=True)
            (tree / package / "__init__.py").touch()


def _run(*, cwd: Path, env: dict[str, str], parts: str, database: str, output: Path, log: Path) -> dict[str, Any]:
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "bench", "--parts", parts, "--database", database, "--output", str(output)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    result: dict[str, Any] = json.loads(output.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    outdir = ROOT / "var" / "bench" / "ab"
    outdir.mkdir(parents=True, exist_ok=True)
    base = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    a_env = {**base, **env_assignments(args.a_env)}
    sides = {
        "A": (_worktree(args.a_rev, outdir, env=a_env) if args.a_rev else ROOT, a_env),
        "B": (ROOT, {**base, **env_assignments(args.b_env)}),
    }
    results: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    try:
        for number in range(1, args.pairs + 1):
            for side, (cwd, env) in sides.items():
                stem = outdir / f"{args.tag}-{side}-{number}"
                result = _run(
                    cwd=cwd,
                    env=env,
                    parts=args.parts,
                    database=args.database,
                    output=stem.with_suffix(".json"),
                    log=stem.with_suffix(".log"),
                )
                results[side].append(result)
                shown = next((key for key in DEFAULT_KEYS if key in result), None)
                print(f"{side} {number}: {shown} {result.get(shown) if shown else '-'}", flush=True)
    finally:
        if args.a_rev:
            subprocess.run(["git", "worktree", "remove", "--force", str(sides["A"][0])], cwd=ROOT, check=False)
    summary = pairs_summary(results["A"], results["B"], keys=[k for k in args.keys.split(",") if k])
    (outdir / f"{args.tag}.txt").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
