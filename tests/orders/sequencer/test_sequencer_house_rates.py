"""The house's cap in dollars on a market quoted in an asset that is not USD-pegged: each
batch placing orders in ETH-BTC reads BTC-USDT's reference price (BTC's dollar rate) with
its other reads, so a change made by the engine of another shard applies from the next
batch; a batch placing only in USDT markets reads no rate (docs/matching.md, "House
auto-fill")."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from django.db import connection

from orders.models import Market
from orders.sequencer.commands import place_command, reference_price_command
from orders.sequencer.loop import Sequencer
from tests.factories import UserFactory, fund, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import fund_house

pytestmark = pytest.mark.django_db


def _eth_btc() -> Market:
    market = market_create(
        "ETH-BTC", price_tick="0.00001", quantity_step="0.001", min_quantity="0.001", reference_price="0.05000"
    )
    fund_house(market, base="1000", quote="100")
    return market


def _market_buy(user: Any, symbol: str, quantity: str = "10") -> dict[str, Any]:
    return place_command(
        user_id=user.pk, fields={"market": symbol, "side": "buy", "type": "market", "quantity": quantity}
    )


def _filled(answer: dict[str, Any]) -> str:
    assert answer["status"] == 201, answer
    return str(answer["order"]["filled_quantity"])


def _rate_reads(sequencer: Sequencer, commands: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The batch's answers and the statements it sent that read reference prices by symbol
    (the rates; the market rows' read names its columns and the markets by id)."""
    statements: list[tuple[str, bool]] = []
    postgresql = connection.vendor == "postgresql"

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql, postgresql and bool(connection.connection.pgconn.pipeline_status)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        answers = sequencer.run_batch(commands)
    rates = [
        (sql, piped)
        for sql, piped in statements
        if "orders_market" in sql and "reference_price" in sql and "symbol" in sql and "is_active" not in sql
    ]
    # On PostgreSQL in the pipeline of the batch's reads: no round trip more.
    assert all(piped for _, piped in rates) or not postgresql, rates
    return answers, [sql for sql, _ in rates]


def test_a_reference_price_changed_by_another_shard_moves_the_cap_from_the_next_batch():
    btc_usdt = market_create("BTC-USDT", reference_price="60000.00")
    _eth_btc()
    taker = UserFactory()
    fund(taker, "BTC", "5")
    eth_btc_engine, btc_usdt_engine = Sequencer(symbols={"ETH-BTC"}), Sequencer(symbols={"BTC-USDT"})
    for engine in (eth_btc_engine, btc_usdt_engine):
        engine.load()

    [first] = eth_btc_engine.run_batch([_market_buy(taker, "ETH-BTC")])
    assert _filled(first) == "0.16500000"  # 500 / 60000 = 0.00833333 BTC at 0.05025
    halved = reference_price_command(market_id=btc_usdt.pk, price="30000.00", large_move=True)
    [changed] = btc_usdt_engine.run_batch([halved])
    assert changed["status"] == 200
    [second] = eth_btc_engine.run_batch([_market_buy(taker, "ETH-BTC")])
    assert _filled(second) == "0.33100000"  # 0.01666666 BTC
    Market.objects.filter(pk=btc_usdt.pk).delete()  # no BTC-USDT market: BTC has no dollar rate
    [third] = eth_btc_engine.run_batch([_market_buy(taker, "ETH-BTC")])
    assert (_filled(third), third["order"]["status_reason"]) == ("0.00000000", "no_liquidity")
    assert_invariants()


def test_only_batches_placing_in_a_market_quoted_in_another_asset_read_a_rate(market):
    market_create("BTC-USDT", reference_price="60000.00")
    _eth_btc()
    fund_house(market, base="10")
    taker = UserFactory()
    fund(taker, "BTC", "5")
    fund(taker, "USDT", "5000")
    sequencer = Sequencer()
    sequencer.load()
    sequencer.run_batch([_market_buy(taker, "ETH-USDT", "0.1"), _market_buy(taker, "ETH-BTC", "0.1")])  # warm

    answers, rates = _rate_reads(sequencer, [_market_buy(taker, "ETH-USDT", "0.1")])
    assert (_filled(answers[0]), rates) == ("0.10000000", [])
    answers, rates = _rate_reads(sequencer, [_market_buy(taker, "ETH-BTC"), _market_buy(taker, "ETH-BTC")])
    assert [_filled(answer) for answer in answers] == ["0.16500000"] * 2
    assert len(rates) == 1  # one read for the batch, whatever its commands
    answers, rates = _rate_reads(sequencer, [_market_buy(taker, "ETH-USDT", "0.1")])
    assert rates == []
    assert_invariants()


def test_no_rate_is_read_when_the_house_is_switched_off(settings):
    settings.AUTO_FILL_ENABLED = False
    market_create("BTC-USDT", reference_price="60000.00")
    _eth_btc()
    taker = UserFactory()
    fund(taker, "BTC", "5")
    sequencer = Sequencer()
    sequencer.load()
    answers, rates = _rate_reads(sequencer, [_market_buy(taker, "ETH-BTC")])
    assert (_filled(answers[0]), rates) == ("0.00000000", [])
    assert D(answers[0]["order"]["remaining_quantity"]) == D(10)
