"""Locating and supervising the project-local anvil (no anvil needed for these)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from revenue.chain import devnode
from revenue.chain.devnode import AnvilError, AnvilNode, find_anvil, free_port

from . import conftest

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _executable(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    path.chmod(0o755)
    return path


def test_find_anvil_prefers_the_native_binary(tmp_path: Path) -> None:
    assert find_anvil(tmp_path) is None
    shim = _executable(tmp_path / "node_modules" / ".bin" / "anvil", "#!/bin/sh\n")
    assert find_anvil(tmp_path) == shim
    plat = devnode._PLATFORMS.get((sys.platform, platform.machine().lower()))
    if plat is None:
        pytest.skip("no native anvil package for this platform")
    native = _executable(tmp_path / "node_modules" / "@foundry-rs" / f"anvil-{plat}" / "bin" / "anvil", "")
    assert find_anvil(tmp_path) == native
    native.chmod(0o644)  # not executable: ignored
    assert find_anvil(tmp_path) == shim


def test_project_pins_anvil_in_package_json() -> None:
    import json

    package = json.loads((PROJECT_ROOT / "package.json").read_text(encoding="utf-8"))
    assert package["private"] is True
    assert package["devDependencies"]["@foundry-rs/anvil"] == "1.7.1"  # exact pin
    lock = json.loads((PROJECT_ROOT / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/@foundry-rs/anvil"]["version"] == "1.7.1"
    wrapper = PROJECT_ROOT / "scripts" / "anvil"
    assert wrapper.is_file() and os.access(wrapper, os.X_OK)


def test_missing_anvil_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "find_anvil", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm ci"):
        conftest.require_anvil()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="npm ci"):
        conftest.require_anvil()


def test_node_that_dies_at_start_reports_its_stderr(tmp_path: Path) -> None:
    fake = _executable(tmp_path / "anvil", "#!/bin/sh\necho 'address already in use' >&2\nexit 3\n")
    node = AnvilNode(fake, startup_timeout=10)
    with pytest.raises(AnvilError, match="address already in use"):
        node.start()
    assert not node.running


def test_node_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    fake = _executable(tmp_path / "anvil", "#!/bin/sh\nexec sleep 30\n")
    node = AnvilNode(fake, startup_timeout=0.5)
    with pytest.raises(AnvilError, match="did not answer"):
        node.start()
    assert not node.running and node.process is None


def test_command_line() -> None:
    port = free_port()
    node = AnvilNode("/bin/false", port=port, state_path="/tmp/state.json")  # noqa: S108 - never started
    cmd = node.command()
    assert cmd[0] == "/bin/false"
    assert cmd[cmd.index("--port") + 1] == str(port)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--chain-id") + 1] == "31337"
    assert cmd[cmd.index("--state") + 1] == "/tmp/state.json"  # noqa: S108
    assert "--silent" in cmd and "--block-base-fee-per-gas" in cmd
    assert node.uri == f"http://127.0.0.1:{port}"
