"""POST /api/orders/cancel-all (api.md v1.1, "More for API clients"): `{market?}` -> 200
`{cancelled: [order, ...]}`, every live order of the caller (in that market), pending stops
included; nobody else's orders; locks released."""

from __future__ import annotations

from typing import Any

import pytest

from orders.models import Order, OrderStatus
from orders.sequencer.transport import in_process_engine_reset
from tests.orders.invariants import assert_invariants
from tests.orders.support import live_order_ids

pytestmark = pytest.mark.django_db


def _book(trader: Any) -> dict[str, Any]:
    """alice: two resting buys and a pending stop in ETH-USDT, a resting sell in BTC-USDT, a
    filled order; bob: a resting order of his own, partially filled by alice's."""
    alice, bob = trader(USDT="100000", ETH="2", BTC="1"), trader(USDT="100000", ETH="1")
    ids = {
        "eth_buy": alice.order(side="buy", type="limit", quantity="0.1", price="1900.00").json()["id"],
        "eth_buy2": alice.order(side="buy", type="limit", quantity="0.2", price="1950.00").json()["id"],
        "eth_stop": alice.order(side="sell", type="stop_loss", quantity="0.5", stop_price="1800.00").json()["id"],
        "btc_sell": alice.order(market="BTC-USDT", side="sell", type="limit", quantity="0.1", price="31000.00").json()[
            "id"
        ],
        "bob_sell": bob.order(side="sell", type="limit", quantity="0.2", price="2050.00").json()["id"],
    }
    filled = alice.order(side="buy", type="limit", quantity="0.1", price="2050.00").json()
    assert filled["status"] == "filled"
    assert Order.objects.get(pk=ids["eth_stop"]).status == OrderStatus.PENDING_TRIGGER
    return {"alice": alice, "bob": bob, **ids}


def test_cancel_all_in_one_market_stops_included(two_markets, trader):
    book = _book(trader)
    alice = book["alice"]
    response = alice.api.post("/api/orders/cancel-all", {"market": "ETH-USDT"}, format="json")
    assert response.status_code == 200, response.content
    cancelled = response.json()["cancelled"]
    assert {order["id"] for order in cancelled} == {book["eth_buy"], book["eth_buy2"], book["eth_stop"]}
    for order in cancelled:
        assert (order["status"], order["status_reason"], order["market"]) == ("cancelled", "user_cancelled", "ETH-USDT")
        assert order == alice.api.get(f"/api/orders/{order['id']}").json()
    assert live_order_ids(alice.user) == {int(book["btc_sell"])}
    assert live_order_ids(book["bob"].user) == {int(book["bob_sell"])}
    assert alice.wallet("USDT").locked == 0 and alice.wallet("ETH").locked == 0
    assert_invariants()


def test_cancel_all_everywhere(two_markets, trader):
    book = _book(trader)
    alice = book["alice"]
    response = alice.api.post("/api/orders/cancel-all", {}, format="json")
    assert response.status_code == 200, response.content
    ids = {order["id"] for order in response.json()["cancelled"]}
    assert ids == {book["eth_buy"], book["eth_buy2"], book["eth_stop"], book["btc_sell"]}
    assert live_order_ids(alice.user) == set()
    assert live_order_ids(book["bob"].user) == {int(book["bob_sell"])}
    assert alice.wallet("BTC").locked == 0
    # Nothing left: an empty list, not an error.
    again = alice.api.post("/api/orders/cancel-all", format="json")
    assert (again.status_code, again.json()) == (200, {"cancelled": []})
    assert_invariants()


def test_cancel_all_finds_orders_of_markets_the_engine_has_not_loaded(two_markets, trader):
    book = _book(trader)
    in_process_engine_reset()  # an engine that started after these orders were placed
    response = book["alice"].api.post("/api/orders/cancel-all", {}, format="json")
    assert len(response.json()["cancelled"]) == 4
    assert live_order_ids(book["alice"].user) == set()
    assert_invariants()


def test_an_unknown_or_malformed_market_is_400(market, trader):
    alice = trader(USDT="1000")
    placed = alice.order(side="buy", type="limit", quantity="0.1", price="1900.00").json()
    unknown = alice.api.post("/api/orders/cancel-all", {"market": "NOPE-USDT"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "market_not_found"
    for body in ({"market": ["ETH-USDT"]}, {"market": "x" * 40}, [1]):
        refused = alice.api.post("/api/orders/cancel-all", body, format="json")
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "validation_error", body
    assert live_order_ids(alice.user) == {int(placed["id"])}


def test_a_misspelled_market_cancels_nothing(two_markets, trader):
    """{"symbol": ...} was read as no market at all: every live order in every market was
    cancelled."""
    book = _book(trader)
    alice = book["alice"]
    live = live_order_ids(alice.user)
    response = alice.api.post("/api/orders/cancel-all", {"symbol": "ETH-USDT"}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert list(response.json()["error"]["fields"]) == ["symbol"]
    assert live_order_ids(alice.user) == live
    assert_invariants()


def test_cancel_all_needs_credentials(api_client, market):
    response = api_client.post("/api/orders/cancel-all", {}, format="json")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


def test_cancel_all_is_in_the_schema(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/orders/cancel-all"]["post"]
    assert operation["operationId"] == "orders_cancel_all"
    assert "200" in operation["responses"] and "400" in operation["responses"]


def test_a_query_string_is_refused_not_dropped(two_markets, trader):
    # `?market=BTC-USDT` with no body cancelled every market's orders.
    book = _book(trader)
    alice = book["alice"]
    response = alice.api.post("/api/orders/cancel-all?market=BTC-USDT", {}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and list(error["fields"]) == ["market"]
    assert int(book["eth_buy"]) in live_order_ids(alice.user) and int(book["btc_sell"]) in live_order_ids(alice.user)
