"""The engine's pure modules compiled to C with mypyc (core/compiled.py says which and why).

    python scripts/compile.py            compile them, unless compiled from these very sources
    python scripts/compile.py --check    exit 1 unless they are compiled and up to date
                                         (PLATFORM_COMPILE=0: unless none is compiled)
    python scripts/compile.py --clean    remove the compiled modules: plain Python runs

`make install` runs the first (PLATFORM_COMPILE=0 skips it: plain Python, slower)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _compiled() -> ModuleType:
    """core/compiled.py by its path: importing the `core` package would run the very check
    that refuses stale compiled modules."""
    spec = importlib.util.spec_from_file_location("platform_compiled", ROOT / "core" / "compiled.py")
    if spec is None or spec.loader is None:
        raise SystemExit("core/compiled.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean(compiled: ModuleType) -> None:
    for extension in compiled.extensions_present().values():
        extension.unlink()
    for shared in ROOT.glob("*__mypyc.*"):  # mypyc's runtime library shared by the modules
        shared.unlink()
    (compiled.ROOT / compiled.STAMP_NAME).unlink(missing_ok=True)


def build(compiled: ModuleType) -> int:
    if not compiled.build_problems():
        print("compiled modules: up to date")
        return 0
    clean(compiled)
    digests = compiled.source_digests()  # before compiling: an edit meanwhile shows as stale
    print(f"compiling {len(compiled.COMPILED_MODULES)} modules with mypyc (about 15 s)")
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-m", "mypyc", *compiled.COMPILED_MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        clean(compiled)
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        sys.stderr.write("mypyc failed: nothing compiled (PLATFORM_COMPILE=0 make install runs plain Python)\n")
        return 1
    stamp = compiled.ROOT / compiled.STAMP_NAME
    stamp.parent.mkdir(exist_ok=True)
    stamp.write_text(json.dumps({"python": sys.version, "sources": digests}, indent=1, sort_keys=True))
    problems = compiled.build_problems()
    if problems:
        clean(compiled)
        sys.stderr.write("; ".join(problems) + "\n")
        return 1
    print(f"compiled: {', '.join(compiled.COMPILED_MODULES)}")
    return 0


def check(compiled: ModuleType) -> int:
    if os.environ.get("PLATFORM_COMPILE") == "0":  # plain Python asked for: nothing may be compiled
        problems = ["modules compiled while PLATFORM_COMPILE=0"] if compiled.extensions_present() else []
    else:
        problems = compiled.build_problems()
    if problems:
        print("; ".join(problems), file=sys.stderr)
        return 1
    print("compiled modules: up to date")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true")
    group.add_argument("--clean", action="store_true")
    args = parser.parse_args()
    compiled = _compiled()
    if args.check:
        return check(compiled)
    if args.clean:
        clean(compiled)
        print("compiled modules removed: plain Python runs")
        return 0
    if os.environ.get("PLATFORM_COMPILE") == "0":
        clean(compiled)
        print("PLATFORM_COMPILE=0: plain Python")
        return 0
    return build(compiled)


if __name__ == "__main__":
    sys.exit(main())
