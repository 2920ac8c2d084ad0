"""The committed, compiled HolderReserve artifact.

Runtime code only ever reads ``artifacts/HolderReserve.json``; the Vyper compiler
is needed by ``revenue.chain.compile`` alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACT_NAME = "HolderReserve"
COMPILER = "vyper 0.4.3"
CHAIN_DIR = Path(__file__).resolve().parent
SOURCE_PATH = CHAIN_DIR / "contracts" / f"{CONTRACT_NAME}.vy"
ARTIFACT_PATH = CHAIN_DIR / "artifacts" / f"{CONTRACT_NAME}.json"
ARTIFACT_KEYS = frozenset({"contract_name", "compiler", "source_sha256", "abi", "bytecode"})


class ArtifactError(RuntimeError):
    """The artifact is missing, malformed or was built from a different source."""


@dataclass(frozen=True)
class Artifact:
    contract_name: str
    compiler: str
    source_sha256: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-prefixed deployment (init) code


def source_sha256(source: str | bytes) -> str:
    data = source.encode("utf-8") if isinstance(source, str) else source
    return hashlib.sha256(data).hexdigest()


def render_artifact(artifact: dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, indent 2, trailing newline."""
    return json.dumps(artifact, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def load_artifact(
    path: Path | str | None = None,
    *,
    source_path: Path | str | None = None,
    check_source: bool = True,
) -> Artifact:
    """Read the compiled artifact (abi and bytecode) without the compiler.

    With ``check_source`` (the default), refuse an artifact whose
    ``source_sha256`` does not match the contract source, when that source is
    present (``source_path``; defaults to the repository's source when ``path``
    is the default artifact): deploying stale bytecode must not happen silently.
    Run ``python -m revenue.chain.compile`` after editing the contract.
    """
    artifact_path = Path(path) if path is not None else ARTIFACT_PATH
    if source_path is None and path is None:
        source_path = SOURCE_PATH
    try:
        raw = json.loads(artifact_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"artifact not found: {artifact_path}") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"artifact is not valid JSON: {artifact_path}: {exc}") from exc
    if not isinstance(raw, dict) or not raw.keys() >= ARTIFACT_KEYS:
        raise ArtifactError(f"artifact lacks keys {sorted(ARTIFACT_KEYS)}: {artifact_path}")
    bytecode = raw["bytecode"]
    if not isinstance(bytecode, str) or not bytecode.startswith("0x") or len(bytecode) <= 2:
        raise ArtifactError(f"artifact bytecode is not 0x-prefixed hex: {artifact_path}")
    if not isinstance(raw["abi"], list):
        raise ArtifactError(f"artifact abi is not a list: {artifact_path}")
    if check_source and source_path is not None and Path(source_path).exists():
        actual = source_sha256(Path(source_path).read_bytes())
        if actual != raw["source_sha256"]:
            raise ArtifactError(
                f"{artifact_path.name} was compiled from another source "
                f"(artifact {raw['source_sha256'][:12]}, source {actual[:12]}): "
                "run `python -m revenue.chain.compile`"
            )
    return Artifact(
        contract_name=raw["contract_name"],
        compiler=raw["compiler"],
        source_sha256=raw["source_sha256"],
        abi=raw["abi"],
        bytecode=bytecode,
    )
