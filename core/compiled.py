"""The engine's hot, pure modules compiled to C by mypyc (`make install` runs
scripts/compile.py): the same source, type-checked by mypy, run as an extension module
(docs/performance.md, "The engine's pure modules compiled by mypyc").

A compiled module is a `.so` beside its `.py`, and Python imports the `.so` first: a source
edited since it was compiled would silently not run. `compiled_sources_check()`, called by
the `core` and `orders` packages before any of their modules is imported, refuses that: a
module with an extension beside it must be listed in the build's stamp with the hash its
source has now. Without any extension (a machine without a C compiler, or after
`scripts/compile.py --clean`) the same source runs as plain Python.

Compiled code checks the declared types at run time (a `str` where a `Side` is declared is
a TypeError, where plain Python would carry it along): `compiled_in_use()` tells tests which
of the two they run.

This module imports nothing of the project: scripts/compile.py loads it by its path."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Per command on the engine's batch loop: matching, settlement, money, the writer's arrays,
# the answers' bodies and the batch's wallets. Not here: modules tests patch at run time, or
# that mypyc cannot compile (orders/engine/undo.py, orders/engine/requests.py: see the docs).
COMPILED_MODULES = (
    "core/money.py",
    "orders/engine/book.py",
    "orders/engine/fees.py",
    "orders/engine/market.py",
    "orders/engine/matching.py",
    "orders/engine/money.py",
    "orders/engine/pricing.py",
    "orders/engine/settlement.py",
    "orders/engine/stops.py",
    "orders/engine/types.py",
    "orders/sequencer/answers.py",
    "orders/sequencer/arrays.py",
    "orders/sequencer/wallets.py",
)
STAMP_NAME = "build/compiled-sources.json"  # under ROOT
_checked = False


class CompiledModulesStale(RuntimeError):
    pass


def source_digests(*, root: Path = ROOT, modules: tuple[str, ...] = COMPILED_MODULES) -> dict[str, str]:
    """Each compiled module's source, hashed as it is now."""
    return {module: hashlib.sha256((root / module).read_bytes()).hexdigest() for module in modules}


def extensions_present(*, root: Path = ROOT, modules: tuple[str, ...] = COMPILED_MODULES) -> dict[str, Path]:
    """Extension modules found in the compiled modules' directories ({source path: extension}),
    mypyc's shared library (at the root) aside."""
    found: dict[str, Path] = {}
    for directory in sorted({str(Path(module).parent) for module in modules}):
        for extension in (root / directory).glob("*.so"):
            # the platform's own tag first (`.cpython-311-x86_64-linux-gnu.so`), plain `.so` last
            suffix = next(s for s in (*importlib.machinery.EXTENSION_SUFFIXES, ".so") if extension.name.endswith(s))
            found[f"{directory}/{extension.name[: -len(suffix)]}.py"] = extension
    return found


def stamp_read(*, root: Path = ROOT) -> dict[str, str]:
    """The sources' hashes recorded when they were compiled."""
    try:
        recorded = json.loads((root / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return dict(recorded.get("sources", {})) if isinstance(recorded, dict) else {}


def compiled_problems(*, root: Path = ROOT, modules: tuple[str, ...] = COMPILED_MODULES) -> list[str]:
    """What makes the compiled modules unfit to run (empty: fit, or none compiled)."""
    present = extensions_present(root=root, modules=modules)
    if not present:
        return []
    recorded = stamp_read(root=root)
    now = source_digests(root=root, modules=modules)
    problems = [f"{module} is compiled but not one of COMPILED_MODULES" for module in present if module not in now]
    for module, digest in now.items():
        if module not in present:
            problems.append(f"{module} is not compiled while others are")
        elif recorded.get(module) != digest:
            problems.append(f"{module} changed since it was compiled")
    return problems


def build_problems(*, root: Path = ROOT, modules: tuple[str, ...] = COMPILED_MODULES) -> list[str]:
    """What keeps a build from being complete and current (empty: every module compiled
    from its source as it is now): `scripts/compile.py` builds when there is any, and its
    `--check` fails on them."""
    if not extensions_present(root=root, modules=modules):
        return ["no module is compiled"]
    return compiled_problems(root=root, modules=modules)


def compiled_sources_check() -> None:
    """Once per process: raise CompiledModulesStale rather than run stale compiled code."""
    global _checked
    if _checked:
        return
    problems = compiled_problems(root=ROOT, modules=COMPILED_MODULES)
    if problems:
        raise CompiledModulesStale(
            "; ".join(problems) + ". Run `make compile` to compile them again, or "
            "`.venv/bin/python scripts/compile.py --clean` to run plain Python."
        )
    _checked = True


def compiled_in_use() -> bool:
    """True when the engine's modules run compiled (checked up to date)."""
    compiled_sources_check()
    return bool(extensions_present())
