"""Two platforms on the same servers (docs/operations.md, "Two platforms on one server"):
staging beside production, each with its own database and settings, one Redis database for
both. Each platform is its own processes, as an operator runs them: the settings of
`make run` (its database under VAR_DIR) with REDIS_URL set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis
from django.conf import settings

from tests import environment

ROOT = Path(__file__).resolve().parents[2]


def _platform_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CELERY_", "PROMETHEUS_", "PLATFORM_")) and k not in {"DATABASE_URL", "VAR_DIR"}
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", VAR_DIR=str(var_dir), REDIS_URL=settings.REDIS_URL)
    env.update(overrides)
    return env


def _run(env: dict[str, str], script: str, *args: str) -> object:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


CLAIMS = """
import json, sys
from accounts.api_keys import signature_claim
from core.api.throttling import ResilientScopedRateThrottle

throttle = ResilientScopedRateThrottle()
throttle.num_requests, throttle.duration = 1, 3600
print(json.dumps([signature_claim(key_id=1, signature=sys.argv[1]), throttle.count(sys.argv[2])]))
"""


def _redis_required() -> None:
    environment.require(settings.REDIS_URL.startswith("redis://"), "this test needs REDIS_URL=redis://...")


def test_two_platforms_on_one_redis_database_keep_their_own_claims_and_counts(tmp_path):
    """A signed request's replay claim and a rate limit's count (the registrations of one
    client address, say) are each platform's own: the second platform's first use of a
    signature or of a limit was refused, counted in the first one's keys."""
    _redis_required()
    # A claim is kept for twice the signature's window: longer than the test, however slow.
    staging, production = (
        _platform_env(tmp_path / name, API_SIGNATURE_WINDOW_MS="3600000") for name in ("staging", "production")
    )
    signature, limit = uuid.uuid4().hex, f"throttle_register_{uuid.uuid4().hex}"

    assert _run(staging, CLAIMS, signature, limit) == [True, True]
    assert _run(production, CLAIMS, signature, limit) == [True, True]
    assert _run(staging, CLAIMS, signature, limit) == [False, False]  # every process of a platform shares them


BROKER = """
import json, sys
from celery import current_app as app
import redis
from django.conf import settings

taken = []
if sys.argv[1] == "publish":
    sent = [app.send_task("orders.tasks.inactive_orders_sweep"), app.send_task("revenue.tasks.revenue_delivery_run")]
    taken = [result.id for result in sent]
else:
    with app.connection_for_read() as connection:
        for queue in ("celery", "chain"):
            message = app.amqp.queues[queue](connection.default_channel).get(no_ack=True)
            taken.append(None if message is None else message.headers["id"])
print(json.dumps([settings.PLATFORM_KEY_PREFIX, taken]))
"""


def test_a_platforms_worker_never_takes_another_platforms_tasks(tmp_path):
    """The queues "celery" and "chain" on one Redis database: the other platform's worker
    took this one's tasks (a delivery run, a sweep) and ran them on its own database."""
    _redis_required()
    staging, production = (
        _platform_env(tmp_path / name, CELERY_BROKER_URL=settings.REDIS_URL) for name in ("staging", "production")
    )
    prefixes: list[str] = []
    try:
        prefix, published = _run(staging, BROKER, "publish")
        prefixes.append(prefix)
        prefix, taken_by_production = _run(production, BROKER, "take")
        prefixes.append(prefix)
        _, taken_by_staging = _run(staging, BROKER, "take")
    finally:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for prefix in filter(None, prefixes):
            for key in client.scan_iter(match=f"{prefix}:*"):
                client.delete(key)
    assert taken_by_production == [None, None]
    assert taken_by_staging == published


ALERT = """
import json
import requests
from django.core import mail

posted = []
requests.post = lambda url, json, timeout: posted.append(json) or type("Answer", (), {"raise_for_status": print})()
from revenue.alerts import alert_send

alert_send(kind="delivery_paused", subject="on-chain delivery paused", details={})
print(json.dumps([mail.outbox[0].subject, posted[0].get("platform")]))
"""


def test_the_admins_mail_and_the_alerts_webhook_name_the_platform(tmp_path):
    """Staging and production mailing the same admins and posting to the same pager: the
    same "[Django] on-chain delivery paused" from either, and the same webhook body."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PLATFORM_", "EMAIL_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY="k" * 20 + "-a-long-random-looking-production-secret-value-0123456789",
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",  # an alert is sent after the commit: autocommit is asked
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        ALERT_WEBHOOK_URL="https://hooks.example.com/services/T000/B000/secret",
        LOG_LEVEL="CRITICAL",
    )
    production = _run({**env, "DJANGO_ALLOWED_HOSTS": "exchange.example.com,www.exchange.example.com"}, ALERT)
    staging = _run({**env, "DJANGO_ALLOWED_HOSTS": "staging.example.com", "PLATFORM_NAME": "staging"}, ALERT)
    assert production == ["[exchange.example.com] on-chain delivery paused", "exchange.example.com"]
    assert staging == ["[staging] on-chain delivery paused", "staging"]
