"""The project-local anvil dev node: locate, start, stop/restart with state, control.

anvil is installed by the project itself: ``npm ci`` at the repository root
installs the exact ``@foundry-rs/anvil`` version pinned in package.json /
package-lock.json; npm puts the native binary of the platform package
(``@foundry-rs/anvil-<os>-<arch>``, an optional dependency) at
``node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil`` and a node shim at
``node_modules/.bin/anvil``. ``scripts/anvil`` wraps the same lookup for shells.
Nothing here downloads anything.

For development and tests only; production talks to a real node via
``client.connect(provider_uri=...)``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHAIN_ID = 31337
DEFAULT_BASE_FEE = 1_000_000_000  # 1 gwei genesis base fee
DEFAULT_HARDFORK = "prague"  # the contract is compiled for prague (eth-tester runs prague too)

_PLATFORMS = {
    ("linux", "x86_64"): "linux-amd64",
    ("linux", "amd64"): "linux-amd64",
    ("linux", "aarch64"): "linux-arm64",
    ("linux", "arm64"): "linux-arm64",
    ("darwin", "x86_64"): "darwin-amd64",
    ("darwin", "arm64"): "darwin-arm64",
    ("win32", "amd64"): "win32-amd64",
}


class AnvilError(RuntimeError):
    pass


def find_anvil(project_root: Path | None = None) -> Path | None:
    """The project-local anvil: the native binary, else the npm shim; None if not installed."""
    root = project_root or PROJECT_ROOT
    modules = root / "node_modules"
    plat = _PLATFORMS.get((sys.platform, platform.machine().lower()))
    candidates = []
    if plat:
        exe = "anvil.exe" if sys.platform == "win32" else "anvil"
        candidates.append(modules / "@foundry-rs" / f"anvil-{plat}" / "bin" / exe)
    candidates.append(modules / ".bin" / "anvil")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AnvilRPC:
    """JSON-RPC control of an anvil node (cheat codes used by fault tests)."""

    _ids = itertools.count(1)

    def __init__(self, uri: str, *, timeout: float = 10.0) -> None:
        self.uri = uri
        self.timeout = timeout

    def rpc(self, method: str, *params: Any) -> Any:
        payload: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": list(params),
        }
        response = requests.post(self.uri, json=payload, timeout=self.timeout)
        response.raise_for_status()
        body = response.json()
        if body.get("error"):
            raise AnvilError(f"{method}: {body['error']}")
        return body.get("result")

    # state
    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> bool:
        return bool(self.rpc("evm_revert", snapshot_id))

    # mining
    def mine(self, blocks: int = 1, *, interval: int | None = None) -> None:
        """``anvil_mine``: mine ``blocks`` blocks (optionally ``interval`` seconds apart)."""
        if interval is None:
            self.rpc("anvil_mine", hex(blocks))
        else:
            self.rpc("anvil_mine", hex(blocks), hex(interval))

    def evm_mine(self) -> None:
        self.rpc("evm_mine")

    def set_automine(self, enabled: bool) -> None:
        self.rpc("evm_setAutomine", enabled)

    def automine(self) -> bool:
        return bool(self.rpc("anvil_getAutomine"))

    def set_block_timestamp_interval(self, seconds: int) -> None:
        self.rpc("anvil_setBlockTimestampInterval", seconds)

    def remove_block_timestamp_interval(self) -> None:
        self.rpc("anvil_removeBlockTimestampInterval")

    # mempool
    def drop_transaction(self, tx_hash: str) -> None:
        self.rpc("anvil_dropTransaction", tx_hash)

    def txpool_content(self) -> dict[str, Any]:
        return dict(self.rpc("txpool_content"))

    def pending_hashes(self) -> list[str]:
        pending = self.txpool_content().get("pending", {})
        return [tx["hash"] for by_nonce in pending.values() for tx in by_nonce.values()]

    # fees and balances
    def set_next_block_base_fee(self, wei: int) -> None:
        self.rpc("anvil_setNextBlockBaseFeePerGas", hex(wei))

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", address, hex(wei))

    # reorgs
    def reorg(self, depth: int, tx_block_pairs: Sequence[tuple[str, int]] = ()) -> None:
        """``anvil_reorg``: replace the last ``depth`` blocks (optionally with the given raw txs)."""
        self.rpc("anvil_reorg", depth, [list(pair) for pair in tx_block_pairs])

    def rollback(self, depth: int | None = None) -> None:
        """``anvil_rollback``: drop the last ``depth`` blocks (1 when None)."""
        self.rpc("anvil_rollback", depth)

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)


class AnvilNode(AnvilRPC):
    """An anvil subprocess on 127.0.0.1 with a free port.

    ``state_path`` uses ``--state``: the chain is loaded from it at start (if the
    file exists) and dumped to it at a graceful ``stop()``, so ``restart()``
    brings the same chain back (node-down tests).
    """

    def __init__(
        self,
        binary: Path | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        chain_id: int = DEFAULT_CHAIN_ID,
        base_fee: int = DEFAULT_BASE_FEE,
        hardfork: str = DEFAULT_HARDFORK,
        state_path: Path | str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        found = Path(binary) if binary is not None else find_anvil()
        if found is None:
            raise AnvilError("anvil is not installed: run `npm ci` at the repository root")
        self.binary = found
        self.host = host
        self.port = port or free_port(host)
        self.chain_id = chain_id
        self.base_fee = base_fee
        self.hardfork = hardfork
        self.state_path = Path(state_path) if state_path is not None else None
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        super().__init__(f"http://{host}:{self.port}")

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--silent",
            "--chain-id",
            str(self.chain_id),
            "--hardfork",
            self.hardfork,
            "--block-base-fee-per-gas",
            str(self.base_fee),
        ]
        if self.state_path is not None:
            cmd += ["--state", str(self.state_path)]
        return cmd + list(self.extra_args)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> AnvilNode:
        if self.running:
            return self
        # stderr goes to a file, not a pipe: nobody drains a pipe while the node runs
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.stderr_text()
                self.stop()
                raise AnvilError(f"anvil exited at start (port {self.port}): {err.strip()[:2000]}")
            with contextlib.suppress(requests.RequestException, AnvilError, ValueError):
                if int(self.rpc("eth_chainId"), 16) == self.chain_id:
                    return self
            time.sleep(0.05)
        self.stop()
        raise AnvilError(f"anvil did not answer on {self.uri} within {self.startup_timeout}s")

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop gracefully (SIGTERM: anvil dumps ``--state`` on the way out), kill if it hangs."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return bytes(self._stderr.read()).decode(errors="replace")

    def restart(self) -> AnvilNode:
        self.stop()
        return self.start()

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
