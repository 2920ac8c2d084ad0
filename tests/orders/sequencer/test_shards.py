"""ENGINE_SHARDS that cannot give each market exactly one engine are refused at start (every
process parses them; `manage.py check`, `migrate` and `serve_check` say what is wrong), not
found out at the first order."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError

from core.management.commands import serve_check
from orders.sequencer.loop import Sequencer
from orders.sequencer.shards import shard_for, shards_parse, shards_uncovered, symbols_of_other_shards
from tests.factories import market_create


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("a=ETH-USDT@ipc:///tmp/a.sock;b=ETH-USDT,BTC-USDT@ipc:///tmp/b.sock", "ETH-USDT is named by more than one"),
        ("a=*@ipc:///tmp/a.sock;b=*@ipc:///tmp/b.sock", "more than one shard takes every other market"),
        ("main=ETH-USDT@ipc:///tmp/a.sock;main=*@ipc:///tmp/b.sock", "'main' is named more than once"),
        ("a=ETH-USDT@tcp://10.0.0.5:5701;b=*@tcp://10.0.0.5:5701", "tcp://10.0.0.5:5701 is more than one shard's"),
    ],
)
def test_shards_that_cannot_give_each_market_one_engine_are_refused(text, said):
    with pytest.raises(ValueError, match=said):
        shards_parse(text)


def test_a_market_is_owned_by_the_engine_its_orders_go_to(settings):
    """What such a setting did before: the web sends the market's orders to the first shard,
    whose engine, like the other one, leaves it to the other shard ("No such market")."""
    text = "a=ETH-USDT@ipc:///tmp/a.sock;b=ETH-USDT,BTC-USDT@ipc:///tmp/b.sock"
    with pytest.raises(ValueError):
        shards_parse(text)
    settings.ENGINE_SHARDS = "a=ETH-USDT@ipc:///tmp/a.sock;b=BTC-USDT@ipc:///tmp/b.sock"
    shard = shard_for("ETH-USDT")
    assert Sequencer(symbols=shard.markets, excluded=symbols_of_other_shards(shard)).owns("ETH-USDT")


def test_the_system_check_refuses_them(settings):
    settings.ENGINE_SHARDS = "a=*@ipc:///tmp/a.sock;b=*@ipc:///tmp/b.sock"
    with pytest.raises(SystemCheckError, match=r"orders\.E001"):
        call_command("check")
    settings.ENGINE_SHARDS = "a=ETH-USDT@ipc:///tmp/a.sock;b=*@ipc:///tmp/b.sock"
    call_command("check")


def test_markets_no_shard_owns():
    shards = shards_parse("eth=ETH-USDT@ipc:///tmp/a.sock;btc=BTC-USDT@ipc:///tmp/b.sock")
    assert shards_uncovered(["ETH-USDT", "SOL-USDT", "BTC-USDT", "ADA-USDT"], shards) == ["ADA-USDT", "SOL-USDT"]
    with_rest = shards_parse("eth=ETH-USDT@ipc:///tmp/a.sock;rest=*@ipc:///tmp/b.sock")
    assert shards_uncovered(["SOL-USDT"], with_rest) == []


@pytest.mark.django_db
def test_serve_check_refuses_a_market_no_shard_owns(monkeypatch, settings, tmp_path):
    """Its orders went to the first shard's engine, which does not load it: 'No such market'
    while GET /api/markets listed it."""
    market_create("ETH-USDT")
    market_create("BTC-USDT", reference_price="30000.00")
    for name in ("serve_settings_problems", "database_reachable", "broker_reachable", "cache_reachable"):
        monkeypatch.setattr(serve_check, name, list if name == "serve_settings_problems" else lambda: True)
    monkeypatch.setattr(serve_check, "bind_problem", lambda address: None)
    settings.VAR_DIR = tmp_path
    settings.ENGINE_SHARDS = "eth=ETH-USDT@ipc:///tmp/a.sock"
    with pytest.raises(CommandError, match="no engine shard owns the market\\(s\\) BTC-USDT"):
        call_command("serve_check")
    settings.ENGINE_SHARDS = "eth=ETH-USDT@ipc:///tmp/a.sock;btc=BTC-USDT@ipc:///tmp/b.sock"
    call_command("serve_check")
