"""docs/api.md's signed requests, in Python and with curl, run as written against a live
server: the documentation cannot drift from what the server accepts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.models import ApiKey
from accounts.services import api_key_create
from orders.models import Order
from tests.environment import require
from tests.factories import UserFactory, fund, market_create

pytestmark = pytest.mark.django_db(transaction=True)

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _block(language: str, after: str) -> str:
    text = DOC.read_text()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {language} block after {after!r} in docs/api.md"
    return match.group(1)


@pytest.fixture
def bot_env(live_server) -> dict[str, str]:
    user = UserFactory()
    market_create("ETH-USDT")
    fund(user, "USDT", "1000")
    api_key, secret = api_key_create(user=user, label="docs", permissions=["read", "trade"])
    return {**os.environ, "API_BASE": live_server.url, "API_KEY": api_key.key, "API_SECRET": secret}


def test_the_python_example_works(bot_env, tmp_path):
    script = tmp_path / "bot.py"
    script.write_text(_block("python", "In Python"))
    run = subprocess.run([sys.executable, str(script)], env=bot_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    wallets, placed, cancelled = run.stdout.strip().splitlines()
    assert "USDT" in wallets
    status, order_id = placed.split()
    assert status == "open" and Order.objects.get(pk=order_id).status == "cancelled"
    assert cancelled == "cancelled"
    assert ApiKey.objects.get(key=bot_env["API_KEY"]).last_used_at is not None


def test_the_curl_example_works(bot_env, tmp_path):
    require(shutil.which("curl") is not None and shutil.which("openssl") is not None, "needs curl and openssl")
    script = tmp_path / "bot.sh"
    script.write_text("set -euo pipefail\n" + _block("sh", "With `curl`"))
    run = subprocess.run(["bash", str(script)], env=bot_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert '{"results":[]' in run.stdout  # the signed GET: no open order yet
    assert '"status":"open"' in run.stdout  # the signed POST placed one
    assert Order.objects.filter(status="open").count() == 1
