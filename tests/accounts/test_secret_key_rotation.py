"""Rotating DJANGO_SECRET_KEY with the old key kept in DJANGO_SECRET_KEY_FALLBACKS: what the
old key signed (access and refresh tokens, their password marks, page sessions, API keys'
secrets at rest, the engine's commands) keeps working until the old key is dropped, and
stops then (docs/security.md, "Rotating the secret key")."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.selectors import user_still_signed_in
from accounts.services import api_key_create, api_keys_reencrypt
from accounts.tokens import token_pair_issue
from orders.sequencer.commands import command_signature, command_signed
from tests.accounts.api_key_support import signed_request
from tests.factories import UserFactory, fund, market_create

ROOT = Path(__file__).resolve().parents[2]
OLD = "old-secret-key-" + "o" * 50
NEW = "new-secret-key-" + "n" * 50


def rotate(settings: Any, *, to: str, fallbacks: list[str]) -> None:
    """What a restart with DJANGO_SECRET_KEY=`to` and DJANGO_SECRET_KEY_FALLBACKS=`fallbacks`
    sets (production.py signs the tokens with the secret key)."""
    settings.SECRET_KEY = to
    settings.SECRET_KEY_FALLBACKS = fallbacks
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "SIGNING_KEY": to}


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def test_the_fallbacks_are_read_from_the_environment():
    """The setting had no variable: a rotation could not keep the old key at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=NEW,
        DJANGO_SECRET_KEY_FALLBACKS=f"{OLD},{OLD[::-1]}",
        DJANGO_ALLOWED_HOSTS="exchange.example.com",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/platform",
    )
    script = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.SECRET_KEY_FALLBACKS))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [OLD, OLD[::-1]]


@pytest.mark.django_db
def test_what_the_old_key_signed_works_while_it_is_a_fallback_and_not_after(settings):
    market_create("ETH-USDT")
    rotate(settings, to=OLD, fallbacks=[])
    user = UserFactory()
    fund(user, "USDT", "1000")
    pair = token_pair_issue(user=user)
    api_key, secret = api_key_create(user=user, label="bot", permissions=["read"])
    page = Client()
    page.force_login(user)
    assert page.get("/wallet/").status_code == 200

    rotate(settings, to=NEW, fallbacks=[OLD])
    # Before, each of these answered 401 (or sent the page to the login) at once.
    assert bearer(pair["access"]).get("/api/me").status_code == 200
    placed = bearer(pair["access"]).post(
        "/api/orders",
        {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.01", "price": "1900.00"},
        format="json",
    )
    assert placed.status_code == 201, placed.content
    refreshed = APIClient().post("/api/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
    assert refreshed.status_code == 200, refreshed.content
    assert signed_request(APIClient(), api_key.key, secret, "GET", "/api/me").status_code == 200
    assert page.get("/wallet/").status_code == 200
    assert user_still_signed_in(user_id=user.pk, session_key=page.session.session_key)  # the streams' check

    # The secrets at rest are encrypted again with the new key, before the old one goes.
    out = io.StringIO()
    call_command("api_keys_reencrypt", stdout=out)
    assert out.getvalue().startswith("1 API key secret(s)")
    assert api_keys_reencrypt() == 0
    rotate(settings, to=NEW, fallbacks=[])
    assert bearer(pair["access"]).get("/api/me").status_code == 401  # the old key's token
    assert bearer(refreshed.json()["access"]).get("/api/me").status_code == 200  # the new key's
    assert signed_request(APIClient(), api_key.key, secret, "GET", "/api/me").status_code == 200
    assert ApiKey.objects.count() == 1


def test_an_engine_takes_the_commands_signed_with_a_fallback_key(settings):
    """A rolling rotation: web workers restarted with the new key while an engine still runs
    with the old one as its key and the new one as a fallback, and the other way round."""
    rotate(settings, to=OLD, fallbacks=[])
    old_signed = command_signature(b"{}")
    rotate(settings, to=NEW, fallbacks=[OLD])
    new_signed = command_signature(b"{}")
    assert command_signed(b"{}", old_signed) and command_signed(b"{}", new_signed)
    rotate(settings, to=OLD, fallbacks=[NEW])
    assert command_signed(b"{}", new_signed)
    rotate(settings, to=NEW, fallbacks=[])
    assert not command_signed(b"{}", old_signed)
