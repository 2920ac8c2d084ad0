"""Compile HolderReserve.vy into the committed, reproducible JSON artifact.

    python -m revenue.chain.compile           # (re)write artifacts/HolderReserve.json
    python -m revenue.chain.compile --check   # exit 1 if the committed artifact differs

Only this module imports the Vyper compiler; runtime code uses ``load_artifact``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from revenue.chain.artifacts import (
    ARTIFACT_PATH,
    COMPILER,
    CONTRACT_NAME,
    SOURCE_PATH,
    render_artifact,
    source_sha256,
)

EXPECTED_VYPER_VERSION = COMPILER.split()[1]


def compile_source(source: str) -> dict[str, Any]:
    """Run the Vyper compiler; returns its abi, bytecode and bytecode_runtime outputs."""
    import vyper  # the compiler is a build-time dependency only

    version = vyper.__version__.split("+")[0]
    if version != EXPECTED_VYPER_VERSION:
        raise RuntimeError(f"need vyper {EXPECTED_VYPER_VERSION}, found {vyper.__version__}")
    out: dict[str, Any] = vyper.compile_code(
        source,
        contract_path=f"{CONTRACT_NAME}.vy",
        output_formats=["abi", "bytecode", "bytecode_runtime"],
    )
    return out


def build_artifact(source_path: Path = SOURCE_PATH) -> str:
    """The artifact text for the given source (deterministic)."""
    source = source_path.read_text(encoding="utf-8")
    out = compile_source(source)
    artifact = {
        "contract_name": CONTRACT_NAME,
        "compiler": COMPILER,
        "source_sha256": source_sha256(source),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
    }
    return render_artifact(artifact)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m revenue.chain.compile", description=__doc__)
    parser.add_argument("--check", action="store_true", help="verify the committed artifact, write nothing")
    parser.add_argument("--source", type=Path, default=SOURCE_PATH)
    parser.add_argument("--artifact", type=Path, default=ARTIFACT_PATH)
    args = parser.parse_args(argv)

    expected = build_artifact(args.source)
    if args.check:
        try:
            current = args.artifact.read_text(encoding="utf-8")
        except FileNotFoundError:
            print(f"{args.artifact}: missing; run python -m revenue.chain.compile", file=sys.stderr)
            return 1
        if current != expected:
            print(f"{args.artifact}: differs from a fresh compile of {args.source}", file=sys.stderr)
            return 1
        print(f"{args.artifact}: up to date")
        return 0
    args.artifact.parent.mkdir(parents=True, exist_ok=True)
    args.artifact.write_text(expected, encoding="utf-8")
    print(f"wrote {args.artifact}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
