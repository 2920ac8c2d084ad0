"""The alert rules (monitoring/alerts.yml): promtool accepts them, its unit tests
(monitoring/alerts.test.yml) fire and silence each alert as intended, and every platform
metric an alert reads is one /metrics exposes (a renamed metric would silence an alert)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from bench.infra import ROOT
from revenue.models import DeliveryHeartbeat
from tests.environment import require

RULES = ROOT / "monitoring" / "alerts.yml"
RULE_TESTS = ROOT / "monitoring" / "alerts.test.yml"
METRIC_NAME = re.compile(r"\b((?:platform|django)_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool() -> Path:
    local = ROOT / ".venv" / "bin" / "promtool"
    found = local if local.exists() else (Path(p) if (p := shutil.which("promtool")) else None)
    require(found is not None, "promtool is not installed: run scripts/install-promtool")
    assert found is not None
    return found


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    run = subprocess.run(
        [str(promtool()), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules())} rules found" in run.stdout + run.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    run = subprocess.run(
        [str(promtool()), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=RULE_TESTS.parent,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_every_alert_is_unit_tested() -> None:
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert {str(rule["alert"]) for rule in rules()} == tested


@pytest.mark.django_db
def test_every_metric_an_alert_reads_is_exposed(client) -> None:
    DeliveryHeartbeat.objects.update_or_create(
        # connected: the block gauges are exposed only while the node answers the worker
        pk=1,
        defaults={
            "last_run_at": timezone.now(),
            "connected": True,
            "block_number": 12,
            "signer_balance_wei": str(10**18),
        },
    )
    client.get("/api/markets")  # an answered request: the HTTP counters have samples
    exposed = client.get("/metrics").content.decode()
    names = {line.split("{")[0].split(" ")[0] for line in exposed.splitlines() if line and not line.startswith("#")}
    wanted: set[str] = set()
    for rule in rules():
        wanted |= set(METRIC_NAME.findall(str(rule["expr"])))
    assert wanted, "the rules read no platform metric"
    missing = {name for name in wanted if name not in names}
    assert not missing, f"alerts read metrics /metrics does not expose: {sorted(missing)}"
    assert any(name.endswith(HISTOGRAM_SUFFIXES) for name in wanted)
