"""What every process pays to start: Django's setup loads every app's admin module, in the
engine, beat and each manage.py command too. The chain libraries (web3, eth-account,
eth-abi: about a second of CPU) are loaded only where the chain is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.infra import ROOT

CHAIN_LIBRARIES = ("web3", "eth_account", "eth_abi")


def test_setting_django_up_loads_no_chain_library() -> None:
    script = (
        "import json, sys, django; django.setup(); "
        f"print(json.dumps([name for name in {CHAIN_LIBRARIES!r} if name in sys.modules]))"
    )
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings.local"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_a_web_worker_imports_every_view_before_it_serves() -> None:
    """Its first client no longer waits for the URLs and every view to be imported."""
    script = (
        "import config.asgi; from django.urls import get_resolver; print('url_patterns' in get_resolver().__dict__)"
    )
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings.local"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "True"
