from __future__ import annotations

import ast
import csv
import io
import re
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel import selectors
from flywheel.templatetags.flywheel_text import insight_sentence
from orders.engine.requests import OrderRequest
from orders.models import Asset, Trade, TradeOutbox
from orders.services.orders import order_place
from orders.system_accounts import house_user_id
from revenue.chain.runtime import chain_context_reset
from revenue.models import RevenueEvent, RevenueStream
from revenue.services import post_trade_jobs_process, revenue_collect
from tests.answers import hand_built_bytes
from tests.factories import fund, market_create
from tests.revenue.delivery_support import all_delivered, drive

pytestmark = pytest.mark.django_db
Q8 = Decimal("0.00000001")


def q8(value: Decimal) -> Decimal:
    return value.quantize(Q8, rounding=ROUND_DOWN)


@pytest.fixture
def traded(user, other_user):
    """Real trades and their revenue events: `user` sells to `other_user` and buys from the house."""
    market = market_create("ETH-USDT")
    house = get_user_model().objects.get(pk=house_user_id())
    fund(house, "ETH", "5", bucket=market.pk)
    fund(user, "ETH", "2")
    fund(user, "USDT", "10000")
    fund(user, "TTX", "1500")  # silver: 20% off fees, multiplier 1.25
    fund(other_user, "USDT", "10000")
    order_place(
        user=user, request=OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="1", price="2000.00")
    )
    order_place(user=other_user, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="1"))
    order_place(user=user, request=OrderRequest(market="ETH-USDT", side="buy", type="market", quantity="0.1"))
    post_trade_jobs_process(job_ids=list(TradeOutbox.objects.values_list("pk", flat=True)))
    revenue_collect(stream=1, amount="3.33333333", description="withdrawal", source_type="withdrawal", source_id="w1")
    return market


def test_public_metrics_match_the_events(api_client, traded):
    body = api_client.get("/api/flywheel/metrics").json()
    events = list(RevenueEvent.objects.all())
    gross = sum(e.gross_amount for e in events)
    holder = sum(e.holder_share for e in events)
    assert Decimal(body["total_platform_revenue"]) == gross
    assert Decimal(body["holder_share_total"]) == holder
    assert Decimal(body["reserve_share_total"]) == gross - holder
    assert body["holder_percentage"] == "15.00" and body["reserve_percentage"] == "85.00"
    trade_fees = sum(t.taker_fee + t.maker_fee for t in Trade.objects.all())
    streams = {s["id"]: s for s in body["streams"]}
    assert Decimal(streams[0]["collected"]) == trade_fees
    house = Trade.objects.get(is_house=True)
    assert Decimal(streams[4]["collected"]) == (house.price - house.reference_price) * house.quantity
    assert Decimal(streams[1]["collected"]) == Decimal("3.33333333")
    assert len(body["streams"]) == 10


@pytest.fixture
def traded_big(user, other_user):
    """Trades and revenue events past 15 significant digits (SQLite's floats): `user`
    sells 12345678.9012 ETH at 1234567890123.45 to `other_user`, in two fills."""
    market_create("ETH-USDT")
    fund(user, "ETH", "99999999999.87654321")
    fund(user, "TTX", "1234567890123.12345678")
    fund(user, "TTX", "0.00000001", bucket=7)
    fund(other_user, "USDT", "99999999999999999999.12345678")
    sell = OrderRequest(
        market="ETH-USDT", side="sell", type="limit", quantity="12345678.9012", price="1234567890123.45"
    )
    order_place(user=user, request=sell)
    for quantity in ("0.0001", "12345678.9011"):
        buy = OrderRequest(market="ETH-USDT", side="buy", type="limit", quantity=quantity, price="1234567890123.45")
        order_place(user=other_user, request=buy)
    post_trade_jobs_process(job_ids=list(TradeOutbox.objects.values_list("pk", flat=True)))
    revenue_collect(
        stream=1, amount="98765432109876.12345679", description="w", source_type="withdrawal", source_id="w"
    )


def test_figures_are_exact_past_fifteen_significant_digits(api_client, user_client, traded_big):
    events = list(RevenueEvent.objects.all())
    gross, holder = sum(e.gross_amount for e in events), sum(e.holder_share for e in events)
    trades = list(Trade.objects.all())
    assert len(trades) == 2

    metrics = api_client.get("/api/flywheel/metrics").json()
    reserve = api_client.get("/api/flywheel/reserve-status").json()
    streams = api_client.get("/api/flywheel/revenue-streams").json()
    impact = user_client.get("/api/flywheel/my-impact").json()

    assert Decimal(metrics["total_platform_revenue"]) == gross
    assert Decimal(metrics["holder_share_total"]) == holder
    assert Decimal(metrics["reserve_share_total"]) == gross - holder
    assert Decimal(reserve["total_reserve_collected"]) == gross - holder
    assert Decimal(streams["streams"][0]["collected"]) == sum(t.taker_fee + t.maker_fee for t in trades)
    assert Decimal(impact["ttx_holdings"]) == Decimal("1234567890123.12345679")
    assert Decimal(impact["monthly_volume"]) == sum(t.quote_amount for t in trades)
    assert Decimal(impact["fees_paid_30d"]) == sum(t.maker_fee for t in trades)


def test_reserve_status(api_client, traded):
    body = api_client.get("/api/flywheel/reserve-status").json()
    reserve = sum(e.reserve_share for e in RevenueEvent.objects.all())
    assert Decimal(body["total_reserve_collected"]) == reserve
    assert Decimal(body["circulating_supply"]) == Decimal(500_000_000)
    assert Decimal(body["backing_per_token"]) == q8(reserve / Decimal(500_000_000))


def test_revenue_streams_with_targets_and_progress(api_client, traded):
    body = api_client.get("/api/flywheel/revenue-streams").json()
    trading = body["streams"][0]
    collected = Decimal(trading["collected"])
    assert Decimal(trading["target_monthly"]) == Decimal(250000)
    assert Decimal(trading["progress"]) == (collected / Decimal(250000) * 100).quantize(Decimal("0.01"))
    assert Decimal(body["summary"]["total_collected"]) == sum(e.gross_amount for e in RevenueEvent.objects.all())
    assert body["summary"]["active_streams"] == 3


def test_a_stream_without_a_target_has_progress_with_two_places(api_client, traded):
    # As every other progress (and the summary's without a target): "0.00", not "0".
    RevenueStream.objects.filter(pk=1).update(target_monthly=0)
    body = api_client.get("/api/flywheel/revenue-streams").json()
    assert body["streams"][1]["progress"] == "0.00"


def test_calculator_projects_from_given_revenue(api_client, db):
    body = api_client.get(
        "/api/flywheel/calculator", {"ttx_amount": "10000", "monthly_volume": "50000", "platform_revenue": "100000"}
    ).json()
    pool = Decimal("15000")  # 15% of 100,000
    share = Decimal(10000) / Decimal(500_000_000)
    assert body["tier"] == "gold" and body["revenue_multiplier"] == "1.5"
    assert Decimal(body["holder_pool_monthly"]) == pool
    assert Decimal(body["monthly_earnings"]) == q8(pool * share * Decimal("1.5"))
    assert Decimal(body["annual_earnings"]) == q8(pool * share * Decimal("1.5")) * 12
    assert Decimal(body["monthly_fees_before_discount"]) == Decimal("60")  # 12 bps of 50,000
    assert Decimal(body["monthly_fee_savings"]) == Decimal("21")  # 35% of 60


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(units=st.integers(min_value=0, max_value=500_000_000 * 10**8))
def test_calculator_share_of_supply_is_the_exact_ratio(api_client, db, units):
    """T / S has at most 17 decimals with S = 500,000,000 (T has 8, 1/S has 9): it is given
    whole. It was rounded half even to 12 places: 0.00075 TTX read 0.000000000002 (1.5e-12,
    rounded up) and 0.00000001 TTX read 0 beside monthly earnings computed from 2e-17."""
    ttx = Decimal(units).scaleb(-8)
    body = api_client.get(
        "/api/flywheel/calculator", {"ttx_amount": f"{ttx:f}", "monthly_volume": "0", "platform_revenue": "1000"}
    ).json()
    assert Decimal(body["share_of_supply"]) * 500_000_000 == ttx, body["share_of_supply"]


def test_calculator_share_of_supply_of_tiny_holdings(api_client, db):
    for ttx, share in (("0.00075", "0.000000000001500000"), ("0.00000001", "0.000000000000000020")):
        body = api_client.get("/api/flywheel/calculator", {"ttx_amount": ttx, "monthly_volume": "0"}).json()
        assert body["share_of_supply"] == share


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"ttx_amount": "abc", "monthly_volume": "1"},
        {"ttx_amount": "-1", "monthly_volume": "1"},
        {"ttx_amount": "1", "monthly_volume": "NaN"},
        {"ttx_amount": "1", "monthly_volume": "Infinity"},
        {"ttx_amount": "1e30", "monthly_volume": "1"},
        {"ttx_amount": "1", "monthly_volume": "1", "platform_revenue": "-5"},
        {"ttx_amount": "1", "monthly_volume": "1", "platform_revenue": "1e99"},
        # a ninth decimal place is refused, not rounded (the answer echoes 8)
        {"ttx_amount": "0.000000001", "monthly_volume": "1"},
        {"ttx_amount": "1", "monthly_volume": "0.123456789"},
        {"ttx_amount": "1", "monthly_volume": "1", "platform_revenue": "100.000000005"},
    ],
)
def test_calculator_rejects_bad_parameters(api_client, db, params):
    response = api_client.get("/api/flywheel/calculator", params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize("name", ["binance", "uniswap", "cryptocom", "Binance"])
def test_comparison_known_competitors(api_client, db, name):
    body = api_client.get(f"/api/flywheel/comparison/{name}", {"monthly_volume": "100000"}).json()
    assert body["competitor"] == name.lower()
    their = Decimal(body["their_taker_cost"])
    ours = Decimal(body["our_taker_cost"])
    assert ours == Decimal("120")  # 12 bps of 100,000
    assert their == Decimal(100000) * Decimal(body["their_taker_fee_bps"]) / 10000
    assert Decimal(body["monthly_savings"]) == their - ours


def test_comparison_refuses_a_ninth_decimal_place(api_client, db):
    response = api_client.get("/api/flywheel/comparison/binance", {"monthly_volume": "100000.000000001"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_comparison_unknown_competitor(api_client, db):
    response = api_client.get("/api/flywheel/comparison/nasdaq")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "competitor_not_found"


@pytest.mark.parametrize("path", ["my-impact", "my-impact/export", "my-impact/insights"])
def test_personal_routes_need_authentication(api_client, db, path):
    response = api_client.get(f"/api/flywheel/{path}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_my_impact_numbers(user_client, user, traded):
    trades = Trade.objects.all()
    volume = sum(t.quote_amount for t in trades)  # user took part in both trades
    fees = sum(t.taker_fee if t.taker_user_id == user.pk else t.maker_fee for t in trades)
    holder_pool = sum(e.holder_share for e in RevenueEvent.objects.all())
    body = user_client.get("/api/flywheel/my-impact").json()
    assert Decimal(body["ttx_holdings"]) == Decimal(1500)
    assert Decimal(body["monthly_volume"]) == volume
    assert Decimal(body["fees_paid_30d"]) == fees
    assert Decimal(body["holder_share_generated_30d"]) == q8(fees * Decimal("0.15"))
    assert Decimal(body["reserve_share_generated_30d"]) == fees - q8(fees * Decimal("0.15"))
    assert body["tier"] == "silver" and body["revenue_multiplier"] == "1.25"
    expected = q8(holder_pool * Decimal(1500) / Decimal(500_000_000) * Decimal("1.25"))
    assert Decimal(body["monthly_earnings"]) == expected
    assert Decimal(body["annual_earnings"]) == expected * 12
    assert body["trades_30d"] == Trade.objects.count() == 2


def test_my_impact_uses_a_bounded_number_of_queries(user_client, traded):
    with CaptureQueriesContext(connection) as queries:
        assert user_client.get("/api/flywheel/my-impact").status_code == 200
    assert len(queries) <= 8, [q["sql"] for q in queries]


def test_my_impact_export_is_a_csv_attachment(user_client, user, traded):
    response = user_client.get("/api/flywheel/my-impact/export")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="my-impact.csv"'
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["metric", "value"]
    values = dict(rows[1:])
    assert values["username"] == user.username
    assert values["tier"] == "silver"
    assert Decimal(values["fees_paid_30d"]) == Decimal(
        user_client.get("/api/flywheel/my-impact").json()["fees_paid_30d"]
    )


@pytest.mark.parametrize("accept", ["text/csv", "text/csv; charset=utf-8", "text/*", "application/json", "*/*"])
def test_my_impact_export_answers_a_client_asking_for_csv(user_client, traded, accept):
    # `Accept: text/csv`, the type the schema declares, was 406 `not_acceptable`.
    response = user_client.get("/api/flywheel/my-impact/export", HTTP_ACCEPT=accept)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"


def test_my_impact_export_refuses_other_types_and_errs_in_json(api_client, user_client, traded):
    refused = user_client.get("/api/flywheel/my-impact/export", HTTP_ACCEPT="text/html")
    assert refused.status_code == 406 and refused.json()["error"]["code"] == "not_acceptable"
    anonymous = api_client.get("/api/flywheel/my-impact/export", HTTP_ACCEPT="text/csv")
    assert anonymous.status_code == 401 and anonymous["Content-Type"] == "application/json"
    assert anonymous.json()["error"]["code"] == "not_authenticated"


def test_csv_quotes_awkward_usernames(api_client, db):
    from tests.conftest import jwt_client
    from tests.factories import UserFactory, asset_get

    asset_get("TTX")
    awkward = UserFactory(username="a,b")
    rows = list(csv.reader(io.StringIO(jwt_client(awkward).get("/api/flywheel/my-impact/export").content.decode())))
    assert ["username", "a,b"] in rows


def test_insights_give_the_next_tier_with_numbers(user_client, traded):
    body = user_client.get("/api/flywheel/my-impact/insights").json()
    assert body["tier"] == "silver"
    nxt = next(i for i in body["insights"] if i["kind"] == "next_tier")
    assert nxt["next_tier"] == "gold"
    assert Decimal(nxt["ttx_needed"]) == Decimal(8500)
    assert nxt["revenue_multiplier"] == "1.5"
    assert Decimal(nxt["projected_monthly_earnings"]) > 0


def test_insights_messages_print_numbers_with_their_unit_as_the_page_does(user_client, traded):
    # The API's messages read "Hold 8500.00000000 more TTX ... a 1.5x" and "Your fees of
    # 0.27000000 in 30 days": exact figures without a unit, where the page printed its own
    # sentences; both now read the one `message`.
    messages = {i["kind"]: i["message"] for i in user_client.get("/api/flywheel/my-impact/insights").json()["insights"]}
    assert messages["next_tier"].startswith("Hold 8,500 more TTX to reach Gold: 35% off fees and a 1.5x revenue")
    assert re.fullmatch(
        r"Your fees of [\d,]+\.\d+ USD in 30 days sent [\d,]+\.\d+ USD to holders and [\d,]+\.\d+ USD to the reserve\.",
        messages["your_contribution"],
    ), messages
    assert not re.search(r"\d\.\d{7,}", " ".join(messages.values())), messages


def test_personal_routes_answer_503_without_ttx(user_client, db):
    Asset.objects.filter(symbol="TTX").delete()
    response = user_client.get("/api/flywheel/my-impact")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ttx_not_configured"


def test_session_authentication_works_for_my_impact(client, user, traded):
    client.force_login(user)
    assert client.get("/api/flywheel/my-impact").status_code == 200


@pytest.mark.parametrize("competitor", ["binance", "uniswap"])
def test_comparison_answer_is_the_bytes_the_hand_built_dict_was(api_client, db, competitor):
    volume = Decimal("123456.789")
    answer = api_client.get(f"/api/flywheel/comparison/{competitor}", {"monthly_volume": str(volume)})
    expected = selectors.competitor_comparison(key=competitor, monthly_volume=volume)
    assert answer.content == hand_built_bytes(expected)


def test_insights_answer_is_the_bytes_the_hand_built_dict_was(user_client, user, traded):
    answer = user_client.get("/api/flywheel/my-impact/insights")
    nxt, mine = selectors.my_insights(impact=selectors.my_impact(user_id=user.pk)).insights
    assert isinstance(nxt, selectors.NextTierInsight) and isinstance(mine, selectors.ContributionInsight)
    expected = {
        "tier": "silver",
        "insights": [
            {
                "kind": "next_tier",
                "message": insight_sentence(nxt),
                "next_tier": "gold",
                "ttx_needed": nxt.ttx_needed,
                "fee_discount": "35.00",  # in percent, as the other answers write it (below)
                "revenue_multiplier": "1.5",
                "monthly_fee_savings": nxt.monthly_fee_savings,
                "projected_monthly_earnings": nxt.projected_monthly_earnings,
                "projected_annual_earnings": nxt.projected_annual_earnings,
            },
            {"kind": "your_contribution", "message": insight_sentence(mine)},
        ],
    }
    assert answer.content == hand_built_bytes(expected)


def test_insights_are_figures_and_the_sentences_the_presentations(user, traded):
    # The selector wrote the sentences (importing the pages' template filters); it returns
    # the figures, exact, and flywheel_text words them for the page and the API alike.
    impact = selectors.my_impact(user_id=user.pk)
    result = selectors.my_insights(impact=impact)
    assert result.tier is not None and result.tier.name == "silver"
    nxt, mine = result.insights
    assert (nxt.kind, nxt.tier.name, nxt.ttx_needed) == ("next_tier", "gold", 8500)
    assert nxt.revenue_multiplier == Decimal("1.5")
    assert nxt.projected_annual_earnings == nxt.projected_monthly_earnings * 12
    assert mine.fees_paid_30d == impact.fees_paid_30d
    assert insight_sentence(nxt).startswith("Hold 8,500 more TTX to reach Gold: 35% off fees and a 1.5x revenue")
    assert not any(isinstance(getattr(i, "message", None), str) for i in result.insights)
    imported = {
        node.module
        for node in ast.walk(ast.parse(Path(selectors.__file__).read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not any("templatetags" in module for module in imported), imported


def test_insights_write_the_fee_discount_in_percent_as_my_impact_and_the_calculator_do(api_client, user_client, traded):
    # The next tier's discount read "0.35000000" in the insights, where my-impact and the
    # calculator write "20.00" and "35.00": the same field, a hundred times smaller.
    (insight,) = [i for i in user_client.get("/api/flywheel/my-impact/insights").json()["insights"] if "next_tier" in i]
    assert user_client.get("/api/flywheel/my-impact").json()["fee_discount"] == "20.00"  # silver, 1,500 TTX
    gold = api_client.get("/api/flywheel/calculator", {"ttx_amount": "10000", "monthly_volume": "0"}).json()
    assert insight["next_tier"] == gold["tier"] == "gold"
    assert insight["fee_discount"] == gold["fee_discount"] == "35.00"


@pytest.fixture
def traded_in_btc(user, other_user, traded):
    """Besides `traded` (USDT): `user` sells 1 ETH for BTC to `other_user` on ETH-BTC, whose
    fees (and revenue event) are in BTC; BTC-USDT's reference price is 60,000."""
    market_create("BTC-USDT", reference_price="60000.00")
    market_create("ETH-BTC", price_tick="0.00001", quantity_step="0.001", min_quantity="0.001", reference_price="0.05")
    fund(other_user, "BTC", "1")
    order_place(
        user=user, request=OrderRequest(market="ETH-BTC", side="sell", type="limit", quantity="1", price="0.05000")
    )
    order_place(
        user=other_user, request=OrderRequest(market="ETH-BTC", side="buy", type="limit", quantity="1", price="0.05000")
    )
    post_trade_jobs_process(job_ids=list(TradeOutbox.objects.values_list("pk", flat=True)))
    assert RevenueEvent.objects.filter(currency="BTC").count() == 1
    return Decimal("60000.00")


def _in_usd(events, btc_price: Decimal) -> tuple[Decimal, Decimal]:
    """(gross, holder) of these events in USD: USDT as it is, BTC sums at BTC-USDT's price."""
    usdt = [e for e in events if e.currency == "USDT"]
    btc = [e for e in events if e.currency == "BTC"]
    gross = sum(e.gross_amount for e in usdt) + q8(sum(e.gross_amount for e in btc) * btc_price)
    holder = sum(e.holder_share for e in usdt) + q8(sum(e.holder_share for e in btc) * btc_price)
    return gross, holder


def test_revenue_in_another_currency_counts_at_its_usd_price(api_client, user_client, user, traded_in_btc):
    # Fees are in each market's quote asset: an ETH-BTC market's revenue is in BTC. Its
    # amounts were added to the USDT ones as they were (0.00006 BTC counted as 0.00006 USD).
    events = list(RevenueEvent.objects.all())
    gross, holder = _in_usd(events, traded_in_btc)
    body = api_client.get("/api/flywheel/metrics").json()
    assert Decimal(body["total_platform_revenue"]) == gross
    assert Decimal(body["holder_share_total"]) == holder
    assert Decimal(body["reserve_share_total"]) == gross - holder
    streams = {s["id"]: s for s in body["streams"]}
    assert Decimal(streams[0]["collected"]) == _in_usd([e for e in events if e.stream_id == 0], traded_in_btc)[0]
    reserve = api_client.get("/api/flywheel/reserve-status").json()
    assert Decimal(reserve["total_reserve_collected"]) == gross - holder
    listed = api_client.get("/api/flywheel/revenue-streams").json()
    assert Decimal(listed["summary"]["total_collected"]) == gross

    trades = list(Trade.objects.select_related("market__quote"))
    price = {"USDT": Decimal(1), "BTC": traded_in_btc}

    assert all(user.pk in (t.taker_user_id, t.maker_user_id) for t in trades)
    volume = {c: sum((t.quote_amount for t in trades if t.market.quote.symbol == c), Decimal(0)) for c in price}
    fees = {
        c: sum(
            (t.taker_fee if t.taker_user_id == user.pk else t.maker_fee for t in trades if t.market.quote.symbol == c),
            Decimal(0),
        )
        for c in price
    }
    impact = user_client.get("/api/flywheel/my-impact").json()
    assert Decimal(impact["monthly_volume"]) == sum(q8(volume[c] * price[c]) for c in price)
    assert Decimal(impact["fees_paid_30d"]) == sum(q8(fees[c] * price[c]) for c in price)
    assert Decimal(impact["holder_revenue_30d"]) == holder


@pytest.fixture
def embedded_chain(settings, db):
    """The in-process chain (eth-tester) for real deliveries; ETH-USDT at 2,000 converts."""
    settings.WEB3_PROVIDER_URI = ""
    settings.CHAIN_CONFIRMATIONS = 2
    chain_context_reset()
    market_create("ETH-USDT", reference_price="2000.00")
    yield
    chain_context_reset()


def test_distributed_to_holders_counts_each_currency_at_its_usd_price(api_client, embedded_chain):
    # The holder shares of a TTX-ETH market are in ETH, delivered as they are. The stream's
    # `distributed` (the delivery's books) adds them to the USDT ones: 0.0015 ETH was shown as
    # 0.0015 USD beside 1.5 USD, where 0.0015 ETH is worth 3 USD at ETH-USDT's 2,000.
    usdt = revenue_collect(stream=0, amount="10", description="fee", source_type="t", source_id="usdt")
    eth = revenue_collect(stream=0, amount="0.01", description="fee", source_type="t", source_id="eth", currency="ETH")
    drive(until=all_delivered)
    assert (usdt.holder_share, eth.holder_share) == (Decimal("1.5"), Decimal("0.0015"))
    assert RevenueStream.objects.get(pk=0).distributed == Decimal("1.5015")  # the books, in two currencies
    # collected since: not delivered, so not distributed
    revenue_collect(stream=0, amount="4", description="fee", source_type="t", source_id="later")
    revenue_collect(stream=4, amount="0.02", description="fee", source_type="t", source_id="eth-4", currency="ETH")

    body = api_client.get("/api/flywheel/revenue-streams").json()
    streams = {s["id"]: s for s in body["streams"]}
    assert Decimal(streams[0]["distributed_to_holders"]) == Decimal("1.5") + Decimal("0.0015") * 2000 == 4.5
    assert Decimal(streams[4]["distributed_to_holders"]) == 0
    assert Decimal(body["summary"]["total_distributed_to_holders"]) == Decimal("4.5")
    assert Decimal(streams[0]["collected"]) == 10 + 4 + Decimal("0.01") * 2000
