"""The committed artifact is exactly what the pinned compiler makes of the committed source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from revenue.chain import compile as chain_compile
from revenue.chain.artifacts import (
    ARTIFACT_PATH,
    SOURCE_PATH,
    ArtifactError,
    load_artifact,
    render_artifact,
    source_sha256,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def test_recompile_equals_committed_artifact() -> None:
    committed = ARTIFACT_PATH.read_text(encoding="utf-8")
    assert chain_compile.build_artifact() == committed


def test_committed_artifact_fields_and_format() -> None:
    text = ARTIFACT_PATH.read_text(encoding="utf-8")
    data = json.loads(text)
    assert set(data) == {"contract_name", "compiler", "source_sha256", "abi", "bytecode"}
    assert data["contract_name"] == "HolderReserve"
    assert data["compiler"] == "vyper 0.4.3"
    assert data["source_sha256"] == source_sha256(SOURCE_PATH.read_bytes())
    assert data["bytecode"].startswith("0x") and len(data["bytecode"]) > 1000
    names = {entry.get("name") for entry in data["abi"]}
    assert {
        "deliver",
        "items_paid",
        "is_paid",
        "stream_totals",
        "total_received",
        "signers",
        "paused",
        "owner",
    } <= names
    assert {"Delivered", "Refused", "set_signer", "set_paused", "set_owner"} <= names
    # deterministic rendering: sorted keys, indent 2, one trailing newline
    assert text == render_artifact(data)
    assert text.endswith("}\n") and not text.endswith("\n\n")


def test_check_mode_passes_on_committed_and_fails_on_tampered(tmp_path: Path) -> None:
    assert chain_compile.main(["--check"]) == 0
    tampered = tmp_path / "HolderReserve.json"
    data = json.loads(ARTIFACT_PATH.read_text(encoding="utf-8"))
    data["bytecode"] = data["bytecode"][:-2] + ("00" if data["bytecode"][-2:] != "00" else "01")
    tampered.write_text(render_artifact(data), encoding="utf-8")
    assert chain_compile.main(["--check", "--artifact", str(tampered)]) == 1
    assert chain_compile.main(["--check", "--artifact", str(tmp_path / "missing.json")]) == 1


def test_write_mode_reproduces_the_committed_bytes(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    assert chain_compile.main(["--artifact", str(out)]) == 0
    assert out.read_bytes() == ARTIFACT_PATH.read_bytes()


def test_module_entry_point_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "revenue.chain.compile", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_load_artifact_returns_abi_and_bytecode() -> None:
    art = load_artifact()
    data = json.loads(ARTIFACT_PATH.read_text(encoding="utf-8"))
    assert art.abi == data["abi"]
    assert art.bytecode == data["bytecode"]
    assert art.source_sha256 == data["source_sha256"]


def test_load_artifact_refuses_stale_or_broken_artifacts(tmp_path: Path) -> None:
    source = tmp_path / "HolderReserve.vy"
    source.write_text(SOURCE_PATH.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    copy = tmp_path / "HolderReserve.json"
    copy.write_bytes(ARTIFACT_PATH.read_bytes())
    with pytest.raises(ArtifactError, match="another source"):
        load_artifact(copy, source_path=source)
    assert load_artifact(copy, source_path=source, check_source=False).bytecode.startswith("0x")
    assert load_artifact(copy, source_path=SOURCE_PATH).bytecode == load_artifact().bytecode

    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(broken)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"abi": []}), encoding="utf-8")
    with pytest.raises(ArtifactError, match="lacks keys"):
        load_artifact(partial)
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "nope.json")


def test_runtime_works_without_the_compiler() -> None:
    """Loading, deploying and delivering never import vyper."""
    code = (
        "import sys\n"
        "sys.modules['vyper'] = None  # any import of the compiler now fails\n"
        "from revenue.chain.client import *\n"
        "w3 = connect(provider_uri=None)\n"
        "signer = dev_signer_fund(w3, amount_wei=10**20)\n"
        "address = deploy_reserve(w3, signer=signer)\n"
        "fees = suggest_fees(w3)\n"
        "tx = build_delivery_tx(w3, contract_address=address, signer_address=signer.address,\n"
        "    items=[DeliveryItem(7, 1, 5)], nonce=1,\n"
        "    max_fee_per_gas=fees[0], max_priority_fee_per_gas=fees[1])\n"
        "assert wait_for_receipt(w3, sign_and_send(w3, signer=signer, tx=tx))['status'] == 1\n"
        "assert chain_items_paid(w3, address) == 1\n"
        "assert not any(name == 'vyper' or name.startswith('vyper.') for name in sys.modules\n"
        "               if sys.modules[name] is not None)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
