from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from django.utils.module_loading import import_string
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from bench.infra import RedisServer
from config.celery import app
from core import health
from tests.environment import require

pytestmark = pytest.mark.django_db


def test_healthz_reports_each_dependency(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == "ok"  # the test broker is in-memory
    assert body["chain"] == "embedded"
    assert body["status"] == "ok"


def test_healthz_writes_core_s_checks_then_the_registered_ones_in_name_order(client):
    # The answer as it was when core.views imported the chain and engine checks itself.
    response = client.get("/healthz")
    assert list(response.json()) == ["status", "database", "broker", "beat", "chain", "engines"]
    assert response.content == (
        b'{"status": "ok", "database": "ok", "broker": "ok", "beat": {"status": "never", "last_sent_s": null}, '
        b'"chain": "embedded", "engines": {"inprocess": "ok"}}'
    )


def test_a_registered_check_that_fails_degrades_the_platform(client, monkeypatch):
    monkeypatch.setitem(health._checks, "cache", health.HealthCheck("cache", lambda: "down", lambda v: v == "ok"))
    response = client.get("/healthz")
    assert response.status_code == 200  # only the database down is a 503
    assert response.json()["cache"] == "down" and response.json()["status"] == "degraded"


@override_settings(WEB3_PROVIDER_URI="http://127.0.0.1:9")
def test_healthz_reports_an_unreachable_chain(client):
    body = client.get("/healthz").json()
    assert body["chain"] == "down"
    assert body["status"] == "degraded"


def _periodic_task(name: str, *, last_run_at):
    every, _ = IntervalSchedule.objects.get_or_create(every=30, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(
        name=name, task="revenue.tasks.post_trade_jobs_sweep", interval=every, last_run_at=last_run_at
    )


def _beat_sample(client) -> float:
    (line,) = (
        line
        for line in client.get("/metrics").content.decode().splitlines()
        if line.startswith("platform_beat_last_sent_timestamp_seconds ")
    )
    return float(line.split()[1])


def test_healthz_and_metrics_say_when_beat_stopped_sending(client):
    # Beat dead while trades go on: each trade's events started a delivery run, the delivery
    # heartbeat stayed fresh, /healthz said "ok" and no alert could fire; the post-trade and
    # inactive accounts' sweeps and the re-drive of failed deliveries had stopped.
    PeriodicTask.objects.all().delete()
    assert client.get("/healthz").json()["beat"] == {"status": "never", "last_sent_s": None}
    assert _beat_sample(client) == 0.0  # never: PlatformBeatStalled fires unless beat starts
    last = timezone.now() - timedelta(seconds=health.BEAT_STALLED_SECONDS + 60)
    _periodic_task("swept", last_run_at=last)
    _periodic_task("never ran", last_run_at=None)
    body = client.get("/healthz").json()
    assert body["beat"]["status"] == "stalled" and body["beat"]["last_sent_s"] >= health.BEAT_STALLED_SECONDS + 60
    assert body["status"] == "degraded"
    assert _beat_sample(client) == pytest.approx(last.timestamp(), abs=1e-3)
    sent = timezone.now() - timedelta(seconds=20)
    _periodic_task("re-driven", last_run_at=sent)  # beat back: its next sync
    body = client.get("/healthz").json()
    assert body["beat"]["status"] == "ok" and 20 <= body["beat"]["last_sent_s"] < 60
    assert body["status"] == "ok"
    assert _beat_sample(client) == pytest.approx(sent.timestamp(), abs=1e-3)


def test_beat_writes_its_last_runs_well_within_the_stalled_threshold():
    # celery's default (every 3 minutes) would leave a running beat's time up to 3.5 min old.
    scheduler = import_string(settings.CELERY_BEAT_SCHEDULER.replace(":", "."))
    assert scheduler.sync_every * 4 <= health.BEAT_STALLED_SECONDS


def test_metrics_say_how_full_the_platforms_file_systems_are(client, monkeypatch, tmp_path, settings):
    # A full VAR_DIR (the metrics directory is under it) killed every process with SIGBUS at
    # its next metric write, and nothing had said the disk was filling.
    settings.VAR_DIR = tmp_path
    (tmp_path / "prometheus").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    text = client.get("/metrics").content.decode()
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(("platform_disk_free_bytes", "platform_disk_size_bytes"))
    }
    usage = shutil.disk_usage(tmp_path)
    for directory in ("var", "metrics"):
        free = samples[f'platform_disk_free_bytes{{dir="{directory}"}}']
        size = samples[f'platform_disk_size_bytes{{dir="{directory}"}}']
        assert size == usage.total
        assert 0 < free <= size and abs(free - usage.free) < 64 * 2**20  # what df says, give or take other writers


def _broker_up(client) -> float:
    (line,) = (
        line for line in client.get("/metrics").content.decode().splitlines() if line.startswith("platform_broker_up ")
    )
    return float(line.split()[1])


@pytest.mark.timeout(60)
def test_metrics_say_whether_the_broker_answers(client, monkeypatch, tmp_path):
    # A real Redis as the broker, stopped and started again: a broker outage paged, if at
    # all, as "the chain worker has not run a delivery cycle" 12 minutes later.
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    redis_server = RedisServer(tmp_path).start()
    try:
        monkeypatch.setitem(app.conf, "broker_url", f"{redis_server.url}/0")
        monkeypatch.setenv("CELERY_BROKER_URL", f"{redis_server.url}/0")  # celery prefers it
        assert _broker_up(client) == 1.0
        redis_server.stop()
        assert _broker_up(client) == 0.0
        assert client.get("/healthz").json()["broker"] == "down"  # the same check
        redis_server.start()
        assert _broker_up(client) == 1.0
    finally:
        redis_server.stop()


def test_metrics_exposes_prometheus_text(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests_total_by_view_transport_method_total" in response.content


def test_revenue_split_must_sum_to_one():
    from decimal import Decimal

    from core.checks import revenue_split_check

    with override_settings(REVENUE_HOLDER_PERCENTAGE=Decimal("0.2"), REVENUE_RESERVE_PERCENTAGE=Decimal("0.85")):
        assert [e.id for e in revenue_split_check(None)] == ["core.E002"]
    with override_settings(REVENUE_HOLDER_PERCENTAGE=Decimal("1.5"), REVENUE_RESERVE_PERCENTAGE=Decimal("-0.5")):
        assert {e.id for e in revenue_split_check(None)} == {"core.E001"}
    assert revenue_split_check(None) == []


def test_metrics_count_orders_trades_fees_and_latency(client, user, other_user, django_capture_on_commit_callbacks):
    from orders.engine.requests import OrderRequest
    from orders.services.orders import order_place
    from tests.factories import fund, market_create

    def value(text: str, line_start: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))

    market_create("ETH-USDT")
    fund(other_user, "ETH", "1")
    fund(user, "USDT", "5000")
    latency = 'platform_order_place_seconds_count{type="market"}'
    fee_line = 'platform_fees_total{asset="USDT"}'
    before = client.get("/metrics").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        sell = OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="1", price="2000.00")
        order_place(user=other_user, request=sell)
        order_place(user=user, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="0.5"))
    after = client.get("/metrics").content.decode()

    assert value(after, latency) == value(before, latency) + 1
    assert value(after, 'platform_orders_final_total{reason="",status="filled"}') >= 1
    assert value(after, 'platform_trades_total{counterparty="book",market="ETH-USDT"}') >= 1
    assert abs(value(after, fee_line) - value(before, fee_line) - (1.2 + 0.8)) < 1e-9  # 12 + 8 bps of 1,000
