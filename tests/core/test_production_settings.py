from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.views.debug import get_exception_reporter_filter

ROOT = Path(__file__).resolve().parents[2]


def _check(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings.production", **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    result = _check(
        {
            "DJANGO_SECRET_KEY": "k" * 20 + "-a-long-random-looking-production-secret-value-0123456789",
            "DJANGO_ALLOWED_HOSTS": "exchange.example.com",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/platform",
        }
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_require_a_secret_key():
    result = _check({"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/platform"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "k" * 20 + "-a-long-random-looking-production-secret-value-0123456789",
    "DJANGO_ALLOWED_HOSTS": "exchange.example.com",
    "DATABASE_URL": "postgres://platform:db-password@127.0.0.1:5432/platform",
    "LOG_FORMAT": "json",
}


def test_mail_without_a_mail_server_is_one_json_log_line():
    """An error report (mail to ADMINS on a 5xx) or a delivery alert, with no EMAIL_BACKEND set:
    Django's console backend printed it as a plain-text message of many lines through the
    production's JSON logs (scripts/serve, seen at a SIGTERM under load)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k != "EMAIL_BACKEND"}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings.production", **PRODUCTION_ENV})
    script = (
        "import django; django.setup(); from django.core.mail import mail_admins; "
        "mail_admins('Service Unavailable', 'first line\\nsecond line')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    records = [json.loads(line) for line in lines]  # every line one JSON object
    (mail,) = [record for record in records if record["logger"] == "core.mail"]
    assert mail["mail_subject"].endswith("Service Unavailable")
    assert mail["mail_body"] == "first line\nsecond line"


def test_an_error_report_hides_the_services_urls(settings):
    """The settings an error report lists: DATABASE_URL and the other URLs carry passwords,
    API keys and tokens; Django's filter showed them (it hides names like KEY, TOKEN, PASS)."""
    settings.DATABASE_URL = "postgres://platform:db-password@db.internal:5432/platform"
    settings.WEB3_PROVIDER_URI = "https://mainnet.example.com/v3/node-api-key"
    settings.ALERT_WEBHOOK_URL = "https://hooks.example.com/services/T000/B000/webhook-secret"
    safe = get_exception_reporter_filter(None).get_safe_settings()
    shown = repr(safe)
    for secret in ("db-password", "node-api-key", "webhook-secret"):
        assert secret not in shown
    assert safe["TIME_ZONE"] == settings.TIME_ZONE  # the rest is still shown


def _password_reset_by_mail(module: str, env: dict[str, str]) -> str:
    """PASSWORD_RESET_BY_MAIL as a fresh process with `module` and `env` reads it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k != "EMAIL_BACKEND"}
    script = "import django; django.setup(); from django.conf import settings; print(settings.PASSWORD_RESET_BY_MAIL)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": module, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_reset_links_are_mailed_only_where_mail_leaves_the_process_or_in_development():
    """A reset link written to production's logs would let whoever reads them set anyone's
    password: without a mail server, production mails no link (the page says so)."""
    assert _password_reset_by_mail("config.settings.production", PRODUCTION_ENV) == "False"
    smtp = {**PRODUCTION_ENV, "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend"}
    assert _password_reset_by_mail("config.settings.production", smtp) == "True"
    assert _password_reset_by_mail("config.settings.local", {}) == "True"


def test_the_smtp_server_is_read_from_the_environment():
    """EMAIL_HOST and the rest were not read: with the SMTP backend, every mail went to port
    25 of the host itself whatever was set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EMAIL_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        **PRODUCTION_ENV,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="smtp.example.com",
        EMAIL_PORT="587",
        EMAIL_HOST_USER="platform",
        EMAIL_HOST_PASSWORD="mail-password",
        EMAIL_USE_TLS="1",
    )
    script = (
        "import django, json; django.setup(); from django.core.mail import get_connection; c = get_connection(); "
        "print(json.dumps([c.host, c.port, c.username, c.password, c.use_tls, c.timeout]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer == ["smtp.example.com", 587, "platform", "mail-password", True, 10]
