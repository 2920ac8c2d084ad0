"""No secrets in the repository: every file git tracks (plus untracked files that are not
ignored, i.e. what the next `git add -A` would commit) is scanned for private keys (PEM
blocks, 0x-prefixed 64-hex keys), AWS / GitHub / Slack credentials, literal Django
SECRET_KEYs and secret-bearing files (.env, *.pem, keystores).

The scanner is unit-tested on synthetic strings below, so the repository test can only
pass because the tree is clean, not because the scanner finds nothing. The synthetic
secrets are assembled at run time: this file itself is scanned too.

Policy for 0x + 64 hex (a secp256k1 private key has that shape, and so do transaction
hashes, which are not secrets):
- anvil's / hardhat's well-known dev keys (derived from the public "test ... junk"
  mnemonic, never funded on a real chain) are allowed only in DEV_KEY_PLACES;
- any other such value is flagged when its line or the line before speaks of a key
  (key, secret, private, signer, mnemonic, seed, wallet), unless ALLOWED_HEX lists it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from tests.environment import require

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 5_000_000

# Where anvil's public dev keys may appear, and why.
DEV_KEY_PLACES: dict[str, str] = {
    "tests/": "tests drive a local anvil node with its default accounts",
    "bench/": "benchmarks drive a local anvil node",
    "docs/": "developer docs may show how to use anvil's default account",
    "scripts/anvil": "the dev node launcher",
    "revenue/chain/devnode.py": "starts anvil for development and tests",
}
# Other 64-hex values that look like keys but are not secrets: sha256 of the lowercase hex
# (never the value itself) -> (path, reason). Empty today.
ALLOWED_HEX: dict[str, tuple[str, str]] = {}

SECRET_FILE_NAMES = re.compile(
    r"(^|/)(\.env(\.(?!example$|sample$|template$)[^/]+)?|id_rsa|id_dsa|id_ecdsa|id_ed25519|"
    r"[^/]*\.(pem|key|p12|pfx|jks|keystore)|UTC--[^/]*)$"
)
TEXT_RULES: dict[str, re.Pattern[str]] = {
    "pem-private-key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "aws-access-key-id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "aws-secret-access-key": re.compile(
        r"(?i)aws_?secret_?access_?key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"
    ),
    "github-token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "slack-token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
}
# A literal assigned to SECRET_KEY in code that is not a test (settings read it from the environment).
SECRET_KEY_LITERAL = re.compile(r"""^\s*SECRET_KEY\s*[:=]\s*[rbuRBU]?["'][^"']+["']""", re.MULTILINE)
HEX_KEY = re.compile(r"(?<![0-9A-Za-z])0x([0-9a-fA-F]{64})(?![0-9a-fA-F])")
KEY_CONTEXT = re.compile(r"(?i)key|secret|private|signer|mnemonic|seed|wallet")
DEV_MNEMONIC = " ".join(["test"] * 11 + ["junk"])


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    excerpt: str  # redacted: never the whole secret in a test report


@cache
def dev_keys() -> frozenset[str]:
    """anvil's default accounts 0-9, derived (not copied) from the public dev mnemonic."""
    from eth_account.hdaccount import key_from_seed, seed_from_mnemonic

    seed = seed_from_mnemonic(DEV_MNEMONIC, "")  # the slow part (PBKDF2): once
    return frozenset(key_from_seed(seed, f"m/44'/60'/0'/0/{i}").hex() for i in range(10))


def _fingerprint(hex_value: str) -> str:
    return hashlib.sha256(hex_value.lower().encode()).hexdigest()


def _redact(text: str) -> str:
    return text[:12] + "..." if len(text) > 12 else text


def _in_dev_place(path: str) -> bool:
    return any(path == place or (place.endswith("/") and path.startswith(place)) for place in DEV_KEY_PLACES)


def scan_text(path: str, text: str) -> list[Finding]:
    """Secrets in one file's text; `path` is relative to the repository root (posix)."""
    findings = []
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        for kind, pattern in TEXT_RULES.items():
            for match in pattern.finditer(line):
                findings.append(Finding(path, number, kind, _redact(match.group(0))))
        for match in HEX_KEY.finditer(line):
            value = match.group(1).lower()
            context = line + (lines[number - 2] if number > 1 else "")
            allowed = ALLOWED_HEX.get(_fingerprint(value))
            if allowed is not None and allowed[0] == path:
                continue
            if value in dev_keys():
                if not _in_dev_place(path):
                    findings.append(Finding(path, number, "anvil-dev-key-outside-dev-places", _redact(match.group(0))))
            elif KEY_CONTEXT.search(context.replace(match.group(0), "")):
                findings.append(Finding(path, number, "hex-private-key", _redact(match.group(0))))
    if path.endswith(".py") and not path.startswith("tests/"):
        for match in SECRET_KEY_LITERAL.finditer(text):
            number = text.count("\n", 0, match.start()) + 1
            findings.append(Finding(path, number, "django-secret-key-literal", _redact(match.group(0).strip())))
    return findings


def scan_path_name(path: str) -> list[Finding]:
    return [Finding(path, 0, "secret-file", path)] if SECRET_FILE_NAMES.search(path) else []


def scan_files(root: Path, paths: Iterable[str]) -> tuple[list[Finding], int]:
    """Findings in the given files (relative posix paths under root) and how many were read."""
    findings: list[Finding] = []
    read = 0
    for path in paths:
        findings += scan_path_name(path)
        file = root / PurePosixPath(path)
        if not file.is_file() or file.is_symlink() or file.stat().st_size > MAX_BYTES:
            continue
        data = file.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (images, fonts)
        read += 1
        findings += scan_text(path, data.decode("utf-8", errors="replace"))
    return findings, read


def repository_files(root: Path) -> list[str]:
    """Tracked files plus untracked, not ignored ones (what `git add -A` would commit). Read-only git."""
    run = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return sorted({p for p in run.stdout.decode().split("\0") if p})


def _require_git() -> None:
    present = shutil.which("git") is not None and (ROOT / ".git").exists()
    require(present, "the secret scan needs git and the repository's .git")


# --- the repository ---------------------------------------------------------------------------------


def test_the_repository_holds_no_secrets() -> None:
    _require_git()
    paths = repository_files(ROOT)
    assert "manage.py" in paths and "config/settings/production.py" in paths
    findings, read = scan_files(ROOT, paths)
    assert read > 100, f"only {read} files read: is the listing right?"
    assert not findings, "\n".join(f"{f.path}:{f.line}: {f.kind}: {f.excerpt}" for f in findings)


def test_the_allow_lists_are_documented() -> None:
    for place, reason in DEV_KEY_PLACES.items():
        assert (ROOT / place).exists(), f"stale dev-key place: {place}"
        assert reason
    for fingerprint, (path, reason) in ALLOWED_HEX.items():
        assert len(fingerprint) == 64 and (ROOT / path).exists() and reason


# --- the scanner, on synthetic input -----------------------------------------------------------------


def _kinds(path: str, text: str) -> set[str]:
    return {f.kind for f in scan_text(path, text)}


def test_scanner_finds_pem_private_keys() -> None:
    for label in ("", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA "):
        begin, end = "-----BEGIN " + label, "-----END " + label
        pem = f"{begin}PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n{end}PRIVATE KEY-----"
        assert _kinds("deploy/new_key.txt", f"notes\n{pem}\n") == {"pem-private-key"}, label
    # Public material is not a secret.
    assert not _kinds("docs/tls.md", "-----BEGIN " + "CERTIFICATE-----\n-----BEGIN " + "PUBLIC KEY-----")


def test_scanner_finds_cloud_and_service_tokens() -> None:
    aws_id = "AKIA" + "Z7Q2X9LMN4B8C3D1"
    aws_secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzX8mpl3Q5T"  # 40 characters
    assert _kinds("config/deploy.py", f'KEY_ID = "{aws_id}"') == {"aws-access-key-id"}
    assert _kinds("ops/creds.ini", f"aws_secret_access_key = {aws_secret}") == {"aws-secret-access-key"}
    assert _kinds("ci.yml", "token: gh" + "p_" + "a1B2" * 9) == {"github-token"}
    assert _kinds("notify.py", "hook = 'xox" + "b-1234567890-abcdef'") == {"slack-token"}


def test_scanner_finds_literal_django_secret_keys() -> None:
    literal = "SECRET_KEY = " + '"django-insecure-0123456789abcdefghijklmnopqrstuvwxyz"'
    assert _kinds("config/settings/production.py", f"DEBUG = False\n{literal}\n") == {"django-secret-key-literal"}
    assert _kinds("config/settings/production.py", "SECRET_" + "KEY = 'short'") == {"django-secret-key-literal"}
    # Read from the environment: fine. In tests a fixed key is a fixture, not a secret.
    assert not _kinds("config/settings/production.py", 'SECRET_KEY = env_str("DJANGO_SECRET_KEY")')
    assert not _kinds("tests/core/test_x.py", literal)


def test_scanner_finds_hex_private_keys_but_not_hashes() -> None:
    value = "0x" + hashlib.sha256(b"a made-up key").hexdigest()
    assert _kinds("revenue/chain/client.py", f'SIGNER_KEY = "{value}"') == {"hex-private-key"}
    assert _kinds("tests/revenue/chain/test_x.py", f'private_key = "{value}"') == {"hex-private-key"}
    assert _kinds("docs/x.md", f"# the deployer's key\n{value}") == {"hex-private-key"}
    assert not _kinds("tests/revenue/chain/test_x.py", f'tx_hash = "{value}"')
    assert not _kinds("revenue/x.py", "bytecode = '0x" + "ab" * 40 + "'")  # longer than a key


def test_scanner_allows_anvil_dev_keys_only_in_dev_places() -> None:
    from eth_account import Account

    # The derivation is right: anvil's well-known account 0 is among the keys.
    addresses = {Account.from_key(key).address for key in dev_keys()}
    assert "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" in addresses and len(addresses) == 10
    dev_key = "0x" + sorted(dev_keys())[0]
    assert not _kinds("tests/revenue/chain/conftest.py", f'ANVIL_KEY = "{dev_key}"')
    assert not _kinds("revenue/chain/devnode.py", f'DEFAULT_KEY = "{dev_key}"')
    assert _kinds("revenue/chain/runtime.py", f'DEFAULT_KEY = "{dev_key}"') == {"anvil-dev-key-outside-dev-places"}
    assert _kinds("config/settings/production.py", f'CHAIN_KEY = "{dev_key}"') == {"anvil-dev-key-outside-dev-places"}


def test_scanner_flags_secret_files() -> None:
    for path in (".env", "config/.env.production", "deploy/server.pem", "keys/UTC--2024-01-01--abc", "id_ed25519"):
        assert scan_path_name(path), path
    for path in (".env.example", "docs/env.md", "orders/keys.py", "static/img/key.svg"):
        assert not scan_path_name(path), path


def test_scanner_reads_files_and_redacts(tmp_path: Path) -> None:
    secret = "-----BEGIN " + "OPENSSH PRIVATE KEY-----"
    (tmp_path / "new_file.txt").write_text(f"hello\n{secret}\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    (tmp_path / "clean.py").write_text("x = 1\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\0\0" + secret.encode())
    findings, read = scan_files(tmp_path, ["new_file.txt", "clean.py", "logo.png"])
    assert read == 2
    assert [(f.path, f.line, f.kind) for f in findings] == [("new_file.txt", 2, "pem-private-key")]
    assert "PRIVATE KEY" not in findings[0].excerpt
