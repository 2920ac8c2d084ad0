"""The house's cap is MAX_AUTO_FILL_USD in US dollars on every market: on a market quoted
in an asset that is not USD-pegged (ETH-BTC) it is converted to quote units at that
asset's dollar rate (orders.engine.rates: the reference price of BTC-USDT), and with no
rate the house does not fill there (orders.engine.pricing.house_max_notional, applied by
orders.engine.market)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orders.engine import HouseInventory, MarketRules, OrderType, Side, TimeInForce
from orders.engine.money import AMOUNT_QUANTUM
from orders.engine.pricing import house_max_notional
from orders.engine.rates import usd_rate_market, usd_rates
from tests.orders.engine.exchange import EngineExchange

D = Decimal
TAKER = 1
# ETH-BTC-like: reference 0.05 BTC, tick 0.00001, step 0.001; the house sells at 0.05025
# and buys at 0.04975.
STEP = D("0.001")


def rules(*, max_usd: str = "500", base: str = "1000", quote: str = "1000") -> MarketRules:
    return MarketRules(
        reference_price=D("0.05"),
        max_slippage_bps=500,
        price_tick=D("0.00001"),
        quantity_step=STEP,
        house=HouseInventory(
            base_available=D(base), quote_available=D(quote), max_notional=D(max_usd), slippage_percent=D("0.5")
        ),
    )


def exchange(*, quote_symbol: str, rate: Decimal | None, max_usd: str = "500", base: str = "1000") -> EngineExchange:
    market = EngineExchange.create(
        rules=rules(max_usd=max_usd, base=base),
        owners=[TAKER],
        base=D(100),
        quote=D(100),
        ttx={},
        quote_symbol=quote_symbol,
    )
    if rate is not None or quote_symbol != "USDT":
        market.engine.quote_usd_rate = rate
    return market


def market_order(market: EngineExchange, side: Side, quantity: str, *, tif: TimeInForce = TimeInForce.IOC):
    order = market.place(market.new_order(owner=TAKER, side=side, kind=OrderType.MARKET, quantity=D(quantity), tif=tif))
    assert order is not None
    return order


def house_fills(market: EngineExchange) -> list[tuple[Decimal, Decimal]]:
    return [(t.price, t.quantity) for t in market.journal.trades if t.maker is None]


# --- the rule of dollar rates ------------------------------------------------------------


def test_usd_pegged_currencies_are_worth_one_and_others_their_usdt_markets_reference() -> None:
    assert [usd_rate_market(c) for c in ("USD", "USDT", "USDC", "usdt", "BTC", "ETH")] == [
        None,
        None,
        None,
        None,
        "BTC-USDT",
        "ETH-USDT",
    ]
    rates = usd_rates(currencies={"USDT", "BTC", "XYZ"}, reference_prices={"BTC-USDT": D("60000")})
    assert rates == {"USDT": D(1), "BTC": D("60000")}  # XYZ: no XYZ-USDT market, no rate


# --- the cap in quote units --------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_usd", "rate", "cap"),
    [
        ("500", "1", "500"),  # USD-pegged: the setting itself
        ("500", "60000", "0.00833333"),  # 500 / 60000 = 0.008333..., rounded down
        ("500", "0.5", "1000"),
        ("0", "60000", "0"),
        ("500", None, None),  # no dollar rate: no house fill
        ("500", "0", None),
    ],
)
def test_house_max_notional_examples(max_usd: str, rate: str | None, cap: str | None) -> None:
    result = house_max_notional(max_usd=D(max_usd), quote_usd_rate=None if rate is None else D(rate))
    assert result == (None if cap is None else D(cap))


@settings(max_examples=300, deadline=None)
@given(
    max_usd=st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False, allow_infinity=False),
    rate=st.decimals(min_value=D("0.00000001"), max_value=10**7, places=8, allow_nan=False, allow_infinity=False),
)
def test_house_max_notional_is_the_most_quote_worth_at_most_the_dollar_cap(max_usd: Decimal, rate: Decimal) -> None:
    cap = house_max_notional(max_usd=max_usd, quote_usd_rate=rate)
    assert cap is not None
    assert cap >= 0 and cap == cap.quantize(AMOUNT_QUANTUM)  # an amount of 8 places
    # Exact (Fractions): worth at most the cap in dollars, and one unit more would be worth more.
    assert Fraction(cap) * Fraction(rate) <= Fraction(max_usd)
    assert (Fraction(cap) + Fraction(AMOUNT_QUANTUM)) * Fraction(rate) > Fraction(max_usd)
    if rate == 1:
        assert cap == max_usd


# --- the market engine -------------------------------------------------------------------


def test_a_btc_quoted_market_caps_the_house_at_the_dollar_limit() -> None:
    """500 USD at 60000 USD/BTC = 0.00833333 BTC: 0.165 ETH at 0.05025 (0.00829125 BTC,
    497.475 USD), not 500 BTC's worth (the house would have sold all its 1000 ETH)."""
    market = exchange(quote_symbol="BTC", rate=D("60000"))
    order = market_order(market, Side.BUY, "10")
    assert house_fills(market) == [(D("0.05025"), D("0.165"))]
    assert (order.status.value, order.status_reason) == ("expired", "no_liquidity")

    market = exchange(quote_symbol="BTC", rate=D("60000"))
    market_order(market, Side.SELL, "10")
    assert house_fills(market) == [(D("0.04975"), D("0.167"))]  # 0.00833333 / 0.04975 = 0.1675...


def test_the_same_market_quoted_in_usdt_keeps_the_cap_in_its_own_units() -> None:
    market = exchange(quote_symbol="USDT", rate=None)  # USD-pegged: rate 1 from the start
    assert market.engine.quote_usd_rate == 1
    market_order(market, Side.BUY, "10")
    assert house_fills(market) == [(D("0.05025"), D("10"))]  # 0.5025 USDT, far below 500


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_no_dollar_rate_means_no_house_fill(tif: TimeInForce) -> None:
    market = exchange(quote_symbol="BTC", rate=None)
    order = market_order(market, Side.BUY, "0.1", tif=tif)
    assert house_fills(market) == []
    reason = "no_liquidity" if tif is TimeInForce.IOC else "fok_not_fillable"
    assert (order.status.value, order.status_reason, order.filled_quantity) == ("expired", reason, 0)
    market.assert_locks_match()


def test_a_new_rate_moves_the_cap_of_the_next_order() -> None:
    market = exchange(quote_symbol="BTC", rate=D("60000"))
    market_order(market, Side.BUY, "10")
    market.engine.quote_usd_rate = D("30000")  # BTC-USDT's reference halved: twice the BTC
    market_order(market, Side.BUY, "10")
    assert [quantity for _, quantity in house_fills(market)] == [D("0.165"), D("0.331")]


@settings(max_examples=200, deadline=None)
@given(
    rate=st.decimals(min_value=D("0.01"), max_value=200_000, places=2, allow_nan=False, allow_infinity=False),
    max_usd=st.integers(min_value=0, max_value=5_000).map(D),
    side=st.sampled_from(list(Side)),
    quantity=st.integers(min_value=1, max_value=50_000).map(lambda n: D(n) * STEP),
    base=st.integers(min_value=0, max_value=100).map(D),
)
def test_a_house_fill_is_worth_at_most_the_dollar_cap_and_no_step_less_than_it_allows(
    rate: Decimal, max_usd: Decimal, side: Side, quantity: Decimal, base: Decimal
) -> None:
    market = exchange(quote_symbol="BTC", rate=rate, max_usd=str(max_usd), base=str(base))
    market_order(market, side, str(quantity))
    fills = house_fills(market)
    price = D("0.05025") if side is Side.BUY else D("0.04975")
    # The largest multiple of the step whose value at that price is within the dollar cap,
    # computed exactly (Fractions) rather than through the engine's rounding.
    by_dollars = (Fraction(max_usd) / (Fraction(price) * Fraction(rate)) // Fraction(STEP)) * Fraction(STEP)
    step = Fraction(STEP)
    by_inventory = (
        Fraction(base) // step * step if side is Side.BUY else Fraction(1000) / Fraction(price) // step * step
    )
    expected = min(Fraction(quantity), by_dollars, by_inventory)
    filled = Fraction(fills[0][1]) if fills else Fraction(0)
    assert Fraction(price) * filled * Fraction(rate) <= Fraction(max_usd)
    # Rounding the cap down to 8 places in quote may cost a step only when the exact
    # dollar bound falls within 1e-8 of quote of it.
    if filled < expected:
        assert filled == expected - Fraction(STEP)
        assert Fraction(max_usd) / Fraction(rate) - Fraction(price) * expected < Fraction(AMOUNT_QUANTUM)
    else:
        assert filled == expected
    market.assert_locks_match()
