"""Production hardening beyond `check --deploy` (tests/core/test_production_settings.py):
the settings a production process really ends up with, and the headers and cookies its
middleware really sends. One subprocess loads config.settings.production (it refuses to
import without its environment) and reports as JSON; no database is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "p" * 20 + "-a-long-random-looking-production-secret-value-0123456789"
HOST = "exchange.example.com"

PROBE = r"""
import json, os
import django
django.setup()
from django.conf import settings as s
from django.http import HttpResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.test import Client, RequestFactory

def view(request):
    get_token(request)  # as a page with a form does: the CSRF cookie is sent
    return HttpResponse("ok")

request = RequestFactory().get("/login", secure=True, HTTP_HOST=os.environ["PROBE_HOST"])
csrf_cookie = CsrfViewMiddleware(view)(request).cookies[s.CSRF_COOKIE_NAME]

client = Client(HTTP_HOST=os.environ["PROBE_HOST"])
https = {"HTTP_X_FORWARDED_PROTO": "https"}
plain = client.get("/api/me")
missing = client.get("/api/no-such-endpoint", **https)
me = client.get("/api/me", **https)
foreign = Client(HTTP_HOST="evil.example").get("/api/me", **https)
# The test client connects from 127.0.0.1, the proxy of TRUSTED_PROXIES; a client that
# reaches the server directly cannot claim HTTPS with the header.
forged = client.get("/api/me", REMOTE_ADDR="203.0.113.9", **https)
jwt = s.SIMPLE_JWT
print(json.dumps({
    "DEBUG": s.DEBUG,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "secret_is_env": s.SECRET_KEY == os.environ["DJANGO_SECRET_KEY"],
    "jwt_key_is_secret": jwt["SIGNING_KEY"] == s.SECRET_KEY,
    "jwt_algorithm": jwt.get("ALGORITHM", "HS256"),
    "jwt_access_seconds": jwt["ACCESS_TOKEN_LIFETIME"].total_seconds(),
    "jwt_rotate": jwt["ROTATE_REFRESH_TOKENS"] and jwt["BLACKLIST_AFTER_ROTATION"],
    "hasher": s.PASSWORD_HASHERS[0],
    "session": [s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE],
    "csrf": [s.CSRF_COOKIE_SECURE, s.CSRF_COOKIE_SAMESITE],
    "csrf_cookie": {"secure": bool(csrf_cookie["secure"]), "samesite": csrf_cookie["samesite"]},
    "ssl": [s.SECURE_SSL_REDIRECT, list(s.SECURE_PROXY_SSL_HEADER or [])],
    "hsts": [s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD],
    "renderers": s.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"],
    "permissions": s.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"],
    "rates": s.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
    "chain_key": s.CHAIN_SIGNER_PRIVATE_KEY,
    "middleware": s.MIDDLEWARE,
    "plain": [plain.status_code, plain.get("Location")],
    "missing": [missing.status_code, missing.content.decode(), dict(missing.items())],
    "me": [me.status_code, me.content.decode()],
    "foreign": foreign.status_code,
    "forged": [forged.status_code, forged.get("Location")],
}))
"""

# Each variant of DJANGO_SECRET_KEY production must refuse, and one it must accept.
KEY_RULES = r"""
import importlib, json, os, sys
results = {}
for name, key in json.loads(sys.argv[1]).items():
    os.environ["DJANGO_SECRET_KEY"] = key
    sys.modules.pop("config.settings.production", None)
    try:
        importlib.import_module("config.settings.production")
        results[name] = "accepted"
    except Exception as exc:
        results[name] = type(exc).__name__
print(json.dumps(results))
"""


def _run(code: str, *args: str, **env_overrides: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "PROBE_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": SECRET,
            "DJANGO_ALLOWED_HOSTS": HOST,
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/platform_sec_b_unused",  # never connected
            "PROBE_HOST": HOST,
            "TRUSTED_PROXIES": "127.0.0.1",
            **env_overrides,
        }
    )
    run = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def prod() -> Any:
    # DJANGO_DEBUG=true must not switch DEBUG on in production.
    return _run(PROBE, DJANGO_DEBUG="true")


def test_debug_is_off_and_hosts_are_explicit(prod: Any) -> None:
    assert prod["DEBUG"] is False
    assert prod["ALLOWED_HOSTS"] == [HOST]
    assert prod["foreign"] == 400  # an unknown Host header is refused


def test_secrets_come_from_the_environment(prod: Any) -> None:
    assert prod["secret_is_env"] and prod["jwt_key_is_secret"]
    assert prod["chain_key"] == ""  # no signer key baked in
    assert "MD5" not in prod["hasher"] and "SHA1" not in prod["hasher"]  # the test settings' fast hasher stays there


def test_jwt_settings(prod: Any) -> None:
    assert prod["jwt_algorithm"] == "HS256"
    assert 0 < prod["jwt_access_seconds"] <= 3600
    assert prod["jwt_rotate"]


def test_cookies_are_secure(prod: Any) -> None:
    secure, httponly, samesite = prod["session"]
    assert secure and httponly and samesite in ("Lax", "Strict")
    csrf_secure, csrf_samesite = prod["csrf"]
    assert csrf_secure and csrf_samesite in ("Lax", "Strict")
    # What the middleware really sends.
    assert prod["csrf_cookie"] == {"secure": True, "samesite": csrf_samesite}


def test_https_everywhere(prod: Any) -> None:
    assert prod["ssl"] == [True, ["HTTP_X_FORWARDED_PROTO", "https"]]
    seconds, subdomains, preload = prod["hsts"]
    assert seconds >= 31_536_000 and subdomains and preload
    status, location = prod["plain"]
    assert status == 301 and location == f"https://{HOST}/api/me"
    # X-Forwarded-Proto counts from the trusted proxy only.
    assert prod["forged"] == [301, f"https://{HOST}/api/me"]


def test_security_headers_on_answers(prod: Any) -> None:
    status, body, headers = prod["missing"]
    assert status == 404
    assert json.loads(body) == {"error": {"code": "not_found", "message": "Not found."}}
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Traceback" not in body and "URLconf" not in body


def test_the_api_is_json_only_and_closed_by_default(prod: Any) -> None:
    assert prod["renderers"] == ["rest_framework.renderers.JSONRenderer"]  # no browsable API
    assert prod["permissions"] == ["rest_framework.permissions.IsAuthenticated"]
    status, body = prod["me"]
    assert status == 401 and json.loads(body)["error"]["code"] == "not_authenticated"
    assert set(prod["rates"]) >= {"orders", "register", "password_reset", "password_reset_email"}
    assert prod["rates"]["register"] != "100000/hour"  # not the test settings' rate


def test_middleware_order(prod: Any) -> None:
    chain = prod["middleware"]
    for name in ("SecurityMiddleware", "CsrfViewMiddleware", "XFrameOptionsMiddleware", "AuthenticationMiddleware"):
        assert any(m.endswith(name) for m in chain), name
    position = {m.rsplit(".", 1)[-1]: i for i, m in enumerate(chain)}
    assert position["SecurityMiddleware"] < position["SessionMiddleware"] < position["CsrfViewMiddleware"]


def test_weak_secret_keys_are_refused() -> None:
    variants = {
        "empty": "",
        "short": "x" * 49,
        "insecure_prefix": "insecure-" + "x" * 60,
        "base_default": "insecure-local-development-key-not-for-production",
        "good": SECRET,
    }
    results = _run(KEY_RULES, json.dumps(variants))
    assert results.pop("good") == "accepted"
    assert set(results.values()) == {"ImproperlyConfigured"}, results
