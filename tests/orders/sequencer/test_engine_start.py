"""manage.py engine starts without Django's own system checks (they import the whole web
tier: URL configuration, views, serializers) but still refuses the platform's settings
that would make money paths wrong (core.checks)."""

from __future__ import annotations

import pytest
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from core.checks import PLATFORM_SETTINGS, revenue_split_check, trading_settings_check


def test_the_engine_runs_the_platform_settings_checks_only():
    tagged = registry.get_checks()
    engine_checks = {check for check in tagged if PLATFORM_SETTINGS in getattr(check, "tags", ())}
    assert {trading_settings_check, revenue_split_check} <= engine_checks
    assert all(set(check.tags) == {PLATFORM_SETTINGS} for check in engine_checks)
    assert len(engine_checks) < len(tagged)  # Django's own are left to `manage.py check`


def test_the_engine_refuses_wrong_fee_settings(settings, monkeypatch):
    def started(**_: object) -> None:
        raise AssertionError("the engine started without checking its settings")

    monkeypatch.setattr("orders.management.commands.engine.EngineServer", started)
    settings.MAKER_FEE_BPS, settings.TAKER_FEE_BPS = 20, 10
    with pytest.raises(SystemCheckError, match=r"core\.E004"):
        call_command("engine", skip_checks=False)
