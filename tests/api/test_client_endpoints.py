"""Endpoints bots need (shared/spec/api.md, "More for API clients"): the server's clock,
tickers, an order by its client id."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.engine.requests import OrderRequest
from orders.models import Market, Trade
from orders.services.orders import order_place
from tests.factories import UserFactory, fund, market_create

pytestmark = pytest.mark.django_db

TICKER_FIELDS = {
    "symbol",
    "last_price",
    "best_bid",
    "best_ask",
    "open_24h",
    "high_24h",
    "low_24h",
    "volume_24h",
    "quote_volume_24h",
    "change_24h_percent",
}


def test_server_time_is_iso_utc_with_milliseconds(api_client):
    before = timezone.now()
    body = api_client.get("/api/time").json()
    after = timezone.now()
    assert set(body) == {"server_time"}
    text = body["server_time"]
    assert len(text) == len("2026-12-03T07:15:00.123Z") and text.endswith("Z")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= parsed <= after


def test_server_time_is_never_cached(api_client):
    assert api_client.get("/api/time")["Cache-Control"] == "no-store"


def test_server_time_ignores_bad_credentials(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert api_client.get("/api/time").status_code == 200


def _trade(buyer, seller, *, price: str, quantity: str, market: str = "ETH-USDT") -> None:
    order_place(
        user=seller, request=OrderRequest(market=market, side="sell", type="limit", quantity=quantity, price=price)
    )
    order_place(
        user=buyer, request=OrderRequest(market=market, side="buy", type="limit", quantity=quantity, price=price)
    )


@pytest.fixture
def traders(db):
    market_create("ETH-USDT")
    buyer, seller = UserFactory(), UserFactory()
    fund(buyer, "USDT", "100000")
    fund(seller, "ETH", "100")
    return buyer, seller


def test_an_empty_market_has_null_prices_and_zero_volume(api_client):
    market_create("BTC-USDT", reference_price="60000.00")
    body = api_client.get("/api/markets/BTC-USDT/ticker").json()
    assert body == {
        "symbol": "BTC-USDT",
        "last_price": None,
        "best_bid": None,
        "best_ask": None,
        "open_24h": None,
        "high_24h": None,
        "low_24h": None,
        "volume_24h": "0.00000000",
        "quote_volume_24h": "0.00000000",
        "change_24h_percent": None,
    }


def test_ticker_figures_come_from_the_last_24_hours_of_trades_and_the_book(api_client, traders):
    buyer, seller = traders
    _trade(buyer, seller, price="1500.00", quantity="1")  # moved out of the window below
    Trade.objects.update(executed_at=timezone.now() - timedelta(hours=25))
    _trade(buyer, seller, price="2000.00", quantity="0.5")
    _trade(buyer, seller, price="2100.00", quantity="0.25")
    _trade(buyer, seller, price="1900.00", quantity="0.1")
    order_place(
        user=buyer, request=OrderRequest(market="ETH-USDT", side="buy", type="limit", quantity="1", price="1800.00")
    )
    order_place(
        user=buyer, request=OrderRequest(market="ETH-USDT", side="buy", type="limit", quantity="1", price="1850.00")
    )
    order_place(
        user=seller, request=OrderRequest(market="ETH-USDT", side="sell", type="limit", quantity="1", price="2200.00")
    )
    body = api_client.get("/api/markets/ETH-USDT/ticker").json()
    assert Market.objects.get(symbol="ETH-USDT").last_price == Decimal("1900.00")
    assert body == {
        "symbol": "ETH-USDT",
        "last_price": "1900.00000000",
        "best_bid": "1850.00000000",
        "best_ask": "2200.00000000",
        "open_24h": "2000.00000000",
        "high_24h": "2100.00000000",
        "low_24h": "1900.00000000",
        "volume_24h": "0.85000000",
        "quote_volume_24h": "1715.00000000",  # 1000 + 525 + 190
        "change_24h_percent": "-5.00",
    }


def test_tickers_lists_every_market_with_one_selector_in_a_fixed_number_of_queries(api_client, traders):
    buyer, seller = traders
    market_create("BTC-USDT", reference_price="60000.00")
    _trade(buyer, seller, price="2000.00", quantity="0.5")
    with CaptureQueriesContext(connection) as few:
        body = api_client.get("/api/tickers").json()
    assert [t["symbol"] for t in body] == ["BTC-USDT", "ETH-USDT"]
    assert all(set(t) == TICKER_FIELDS for t in body)
    assert body[1] == api_client.get("/api/markets/ETH-USDT/ticker").json()
    for symbol in ("SOL-USDT", "ADA-USDT", "DOT-USDT"):
        market_create(symbol)
    with CaptureQueriesContext(connection) as more:
        assert len(api_client.get("/api/tickers").json()) == 5
    assert len(more.captured_queries) == len(few.captured_queries)


def test_unknown_market_ticker_is_404(api_client):
    response = api_client.get("/api/markets/NOPE-USDT/ticker")
    assert response.status_code == 404 and response.json()["error"]["code"] == "market_not_found"


def test_order_by_client_id(user_client, other_client, user, traders):
    fund(user, "USDT", "10000")
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}
    for client_order_id in ("bot-1", "cancel", "a/b", "with space"):
        placed = user_client.post("/api/orders", {**body, "client_order_id": client_order_id}, format="json").json()
        found = user_client.get(f"/api/orders/by-client-id/{quote(client_order_id, safe='')}")
        assert found.status_code == 200, (client_order_id, found.content)
        assert found.json() == user_client.get(f"/api/orders/{placed['id']}").json()
        missing = other_client.get(f"/api/orders/by-client-id/{quote(client_order_id, safe='')}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "order_not_found"
    for unknown in ("nope", "x" * 65, "a%00b", "%E2%80%AE"):
        response = user_client.get(f"/api/orders/by-client-id/{unknown}")
        assert response.status_code == 404, unknown
        assert response.json()["error"]["code"] in ("order_not_found", "not_found")


@pytest.mark.parametrize("client_order_id", ["tab\there", "line\nbreak", "bidi\u202eid", "zero\u200bwidth", "del\x7f"])
def test_every_client_order_id_a_placement_takes_is_found(user_client, user, traders, client_order_id):
    """Placing takes any text of 1 to 64 characters but NUL and surrogates: control and
    format characters included, so the look-up must find them too."""
    fund(user, "USDT", "10000")
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}
    placed = user_client.post("/api/orders", {**body, "client_order_id": client_order_id}, format="json")
    assert placed.status_code == 201, placed.content
    found = user_client.get(f"/api/orders/by-client-id/{quote(client_order_id, safe='')}")
    assert found.status_code == 200, found.content
    assert found.json()["id"] == placed.json()["id"]


@pytest.mark.parametrize("debug", [False, True])
def test_an_api_path_with_a_line_break_is_answered_in_the_envelope(api_client, debug):
    with override_settings(DEBUG=debug):
        response = api_client.get("/api/nowhere%0Aelse")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}


def test_new_endpoints_are_in_the_schema(api_client):
    paths = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path in (
        "/api/time",
        "/api/tickers",
        "/api/markets/{symbol}/ticker",
        "/api/orders/by-client-id/{client_order_id}",
        "/api/keys",
        "/api/keys/{key_id}",
    ):
        assert path in paths, path


def _parameter(schema: dict, path: str, name: str) -> dict:
    (found,) = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == name]
    return found


def test_the_schema_states_the_enforced_ranges(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    ranges = {
        ("/api/markets/{symbol}/book", "depth"): (1, 500),
        ("/api/markets/{symbol}/trades", "limit"): (1, 500),
        ("/api/markets/{symbol}/candles", "limit"): (1, 1000),
        ("/api/orders", "limit"): (1, 200),
        ("/api/trades", "limit"): (1, 200),
    }
    for (path, name), (low, high) in ranges.items():
        parameter = _parameter(schema, path, name)["schema"]
        assert (parameter["type"], parameter["minimum"], parameter["maximum"]) == ("integer", low, high), (path, name)
    for name in ("ttx_amount", "monthly_volume"):
        assert _parameter(schema, "/api/flywheel/calculator", name)["required"] is True
    operations = [op for item in schema["paths"].values() for op in item.values() if isinstance(op, dict)]
    assert operations and all("414" in op["responses"] for op in operations)


@pytest.mark.parametrize("limit", ["abc", "0", "201", "-1", "", "1.5"])
def test_paginated_lists_refuse_a_limit_the_schema_refuses(user_client, limit):
    for path in ("/api/orders", "/api/trades"):
        response = user_client.get(f"{path}?limit={limit}")
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_parameter", path
    assert len(user_client.get("/api/orders?limit=200").json()["results"]) == 0


@pytest.mark.parametrize(
    ("market", "says"), [("NOPE", "Must match ^"), ("E" * 40, "1 to 33 printable"), ("", "1 to 33 printable")]
)
def test_a_market_filter_the_schema_refuses_says_why(user_client, market, says):
    """A symbol without its dash was told "At most 33 printable characters." (4 of them),
    and so was an empty one (`?market=`, 0 of them): it is 1 to 33."""
    for path in ("/api/orders", "/api/trades"):
        response = user_client.get(f"{path}?market={market}")
        assert response.status_code == 400, path
        (message,) = response.json()["error"]["fields"]["market"]
        assert message.startswith(says), (path, message)


def test_a_market_filter_naming_no_market_is_refused_not_answered_empty(user_client):
    """`?market=XXX-USDT` answered an empty page, read as "no orders there"; a market staff
    deactivated still filters (a trader's history keeps its orders)."""
    for path in ("/api/orders", "/api/trades"):
        response = user_client.get(f"{path}?market=XXX-USDT")
        assert response.status_code == 400, path
        error = response.json()["error"]
        assert error["code"] == "market_not_found" and error["fields"] == {"market": ["No such market."]}, path
    market = market_create("ETH-USDT")
    Market.objects.filter(pk=market.pk).update(is_active=False)  # as staff deactivate it in the admin
    for path in ("/api/orders", "/api/trades"):
        response = user_client.get(f"{path}?market={market.symbol}")
        assert response.status_code == 200 and response.json()["results"] == [], path


def _component_patterns(schema: dict, component: str) -> dict[str, str | None]:
    properties = schema["components"]["schemas"][component]["properties"]
    return {name: spec.get("pattern") for name, spec in properties.items()}


def test_sums_beyond_one_column_match_the_schema(api_client):
    """Volumes and book levels are sums of amounts, not one column's value: at 1e21 scale
    a day's quote volume has 23 integer digits and a price level of buys more than 22. The
    schema's pattern allowed 22 (a DecimalField(30, 8)'s), so the answers broke it."""
    market = market_create("ETH-USDT", reference_price="6000.00")
    first, second = UserFactory(), UserFactory()
    fund(first, "USDT", "9900000000000000000000")
    fund(second, "ETH", "1500000000000000000")
    # 1.5e18 ETH bought at 6000 (9e21 USDT), then 1.4e18 sold back (8.4e21): 1.74e22 in a day.
    for maker, taker, side, quantity in (
        (second, first, "sell", "1500000000000000000"),
        (first, second, "sell", "1400000000000000000"),
    ):
        for user, way in ((maker, side), (taker, "buy" if side == "sell" else "sell")):
            request = OrderRequest(market=market.symbol, side=way, type="limit", quantity=quantity, price="6000.00")
            order_place(user=user, request=request)
    # Two buys resting at one price: a level of 2e22 ETH (each costs 1e20 USDT).
    for _ in range(2):
        request = OrderRequest(
            market=market.symbol, side="buy", type="limit", quantity="9999999999999999999999", price="0.01"
        )
        order_place(user=first, request=request)
    ticker = api_client.get(f"/api/markets/{market.symbol}/ticker").json()
    book = api_client.get(f"/api/markets/{market.symbol}/book").json()
    assert ticker["quote_volume_24h"] == "17400000000000000000000.00000000"
    assert book["bids"][-1]["quantity"] == "19999999999999999999998.00000000"
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    ticker_patterns = _component_patterns(schema, "TickerOutput")
    for name in ("volume_24h", "quote_volume_24h"):
        assert ticker_patterns[name] is not None
    for name, pattern in ticker_patterns.items():
        if pattern is not None and ticker[name] is not None:
            assert re.fullmatch(pattern.strip("^$"), ticker[name]), (name, ticker[name], pattern)
    level_pattern = _component_patterns(schema, "BookLevelOutput")["quantity"]
    assert level_pattern is not None
    assert re.fullmatch(level_pattern.strip("^$"), book["bids"][-1]["quantity"]), level_pattern


@pytest.mark.parametrize(
    "query",
    [
        "status=open&status=filled",
        "market=ETH-USDT&market=BTC-USDT",
        "limit=5&limit=6",
        "cursor=a&cursor=b",
    ],
)
def test_a_query_parameter_given_twice_is_refused_not_read_as_its_last_value(user_client, query):
    """`?status=open&status=filled` listed the filled orders only, without a word."""
    name = query.split("=")[0]
    path = "/api/trades" if name == "cursor" else "/api/orders"
    response = user_client.get(f"{path}?{query}")
    assert response.status_code == 400, (query, response.content)
    body = response.json()["error"]
    assert body["code"] == "invalid_parameter" and body["fields"] == {name: ["Give this parameter once."]}
    once = user_client.get(f"{path}?{query.split('&')[0]}")
    assert once.status_code == 200 or once.json()["error"]["fields"] != body["fields"], once.content


@pytest.mark.parametrize(
    ("path", "query"),
    [("/api/orders", "symbol=BTC-USDT"), ("/api/orders", "state=open"), ("/api/trades", "symbol=BTC-USDT")],
)
def test_a_query_parameter_a_list_does_not_take_is_refused_not_dropped(user_client, path, query):
    """The caller's lists filter by `market` and `status`; another name (`symbol`, `state`,
    as other exchanges call them) was dropped: every market's orders came back, which a bot
    that cancels what it lists as one market's would cancel."""
    market_create("BTC-USDT", reference_price="60000.00")
    response = user_client.get(f"{path}?{query}")
    assert response.status_code == 400, response.content
    name = query.split("=")[0]
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and list(error["fields"]) == [name]
    # What to send instead, not "send it in the body" (the placement's refusal).
    [message] = error["fields"][name]
    assert "market" in message and "limit" in message and "body" not in message, message
    assert user_client.get(f"{path}?market=BTC-USDT&limit=5").status_code == 200
