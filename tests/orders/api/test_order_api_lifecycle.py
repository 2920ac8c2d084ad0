"""Reading and cancelling orders, and the caller's fills: GET /api/orders (filters,
pagination), GET /api/orders/{id}, POST /api/orders/{id}/cancel, GET /api/trades."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders.models import Order
from tests.factories import market_create
from tests.orders.invariants import assert_invariants

pytestmark = pytest.mark.django_db

D = Decimal
TRADE_KEYS = {"trade_id", "order_id", "market", "side", "price", "quantity", "fee", "liquidity", "executed_at"}


def all_pages(api, url: str) -> list[dict]:
    results: list[dict] = []
    while url:
        page = api.get(url)
        assert page.status_code == 200, page.content
        body = page.json()
        assert set(body) == {"results", "next"}
        results += body["results"]
        url = body["next"]
    return results


# --- GET /api/orders ------------------------------------------------------------------------


@pytest.fixture
def history(market, trader):
    """Five orders of `me` in two markets in every kind of state, and one of someone else."""
    market_create("BTC-USDT", reference_price="30000.00")
    me = trader(ETH="2", BTC="1", USDT="10000")
    other = trader(ETH="1", USDT="10000")
    ids = {
        "open": me.order(side="buy", type="limit", quantity="1", price="1500.00").json()["id"],
        "btc_open": me.order(market="BTC-USDT", side="sell", type="limit", quantity="0.5", price="35000").json()["id"],
        "expired": me.order(side="buy", type="market", quantity="1").json()["id"],
        "maker": me.order(side="sell", type="limit", quantity="1", price="2000.00").json()["id"],
    }
    other.order(side="buy", type="limit", quantity="1", price="2000.00")  # fills `maker`
    ids["cancelled"] = me.order(side="sell", type="limit", quantity="0.5", price="2500.00").json()["id"]
    assert me.api.post(f"/api/orders/{ids['cancelled']}/cancel").status_code == 200
    ids["other"] = other.order(side="sell", type="limit", quantity="0.1", price="2600.00").json()["id"]
    assert_invariants()
    return me, other, ids


def test_list_is_the_callers_orders_newest_first(history):
    me, _, ids = history
    body = me.api.get("/api/orders").json()
    assert body["next"] is None
    assert [o["id"] for o in body["results"]] == [
        ids["cancelled"],
        ids["maker"],
        ids["expired"],
        ids["btc_open"],
        ids["open"],
    ]
    assert [o["status"] for o in body["results"]] == ["cancelled", "filled", "expired", "open", "open"]
    assert all(D(o["remaining_quantity"]) == D(o["quantity"]) - D(o["filled_quantity"]) for o in body["results"])
    assert_invariants()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open", ["btc_open", "open"]),
        ("status=filled", ["maker"]),
        ("status=expired", ["expired"]),
        ("status=cancelled", ["cancelled"]),
        ("status=pending_trigger", []),
        ("market=BTC-USDT", ["btc_open"]),
        ("market=ETH-USDT&status=open", ["open"]),
    ],
)
def test_list_filters(history, query, expected):
    me, _, ids = history
    body = me.api.get(f"/api/orders?{query}").json()
    assert [o["id"] for o in body["results"]] == [ids[name] for name in expected]


def test_list_rejects_an_unknown_status(history):
    me, _, _ = history
    response = me.api.get("/api/orders?status=done")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_list_is_paginated_with_results_and_next(history):
    me, _, ids = history
    first = me.api.get("/api/orders?limit=2").json()
    assert len(first["results"]) == 2
    assert first["next"].startswith("http://testserver/api/orders?")
    everything = all_pages(me.api, "/api/orders?limit=2")
    mine = [ids[k] for k in ("cancelled", "maker", "expired", "btc_open", "open")]
    assert [o["id"] for o in everything] == mine
    # A page stays stable when newer orders arrive after it was read.
    second_page_url = first["next"]
    me.order(side="buy", type="limit", quantity="0.1", price="1000.00")
    assert [o["id"] for o in me.api.get(second_page_url).json()["results"]] == mine[2:4]


def test_orders_need_credentials(api_client, history):
    assert api_client.get("/api/orders").status_code == 401
    assert api_client.get("/api/trades").status_code == 401


# --- GET /api/orders/{id} ---------------------------------------------------------------------


def test_detail_is_the_order_as_it_stands(history):
    me, _, ids = history
    order = me.api.get(f"/api/orders/{ids['maker']}").json()
    assert (order["id"], order["status"], order["filled_quantity"], order["remaining_quantity"]) == (
        ids["maker"],
        "filled",
        "1.00000000",
        "0.00000000",
    )
    assert [(f["liquidity"], f["counterparty"], f["fee"]) for f in order["fills"]] == [("maker", "book", "1.60000000")]
    assert [e["status"] for e in order["events"]] == ["open", "filled"]


@pytest.mark.parametrize("which", ["other", "missing", "letters", "huge", "negative"])
def test_detail_of_an_order_that_is_not_the_callers_is_404(history, which):
    me, other, ids = history
    order_id = {
        "other": ids["other"],
        "missing": "987654",
        "letters": "abc",
        "huge": "9" * 30,
        "negative": "-1",
    }[which]
    response = me.api.get(f"/api/orders/{order_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "order_not_found"
    assert other.api.get(f"/api/orders/{ids['other']}").status_code == 200


# --- cancel ----------------------------------------------------------------------------------------


def test_cancel_releases_the_funds_and_records_the_reason(market, trader):
    me = trader(USDT="3000")
    placed = me.order(side="buy", type="limit", quantity="1", price="1500.00").json()
    assert me.wallet("USDT").locked == D("1501.8")

    response = me.api.post(f"/api/orders/{placed['id']}/cancel")

    assert response.status_code == 200
    order = response.json()
    assert (order["id"], order["status"], order["status_reason"]) == (placed["id"], "cancelled", "user_cancelled")
    assert [(e["status"], e["reason"]) for e in order["events"]] == [("open", None), ("cancelled", "user_cancelled")]
    assert order["cancelled_at"] == order["updated_at"] == order["events"][-1]["at"]
    assert order["filled_at"] is None
    assert (order["filled_quantity"], order["remaining_quantity"]) == ("0.00000000", "1.00000000")
    assert (me.wallet("USDT").balance, me.wallet("USDT").locked) == (D("3000"), 0)
    assert Order.objects.get(pk=placed["id"]).locked_amount == 0
    assert me.api.get("/api/markets/ETH-USDT/book").json()["bids"] == []
    assert_invariants()


def test_cancel_of_a_partially_filled_order_keeps_the_fill(market, trader):
    me = trader(ETH="2")
    taker = trader(USDT="5000")
    placed = me.order(side="sell", type="limit", quantity="2", price="2000.00").json()
    taker.order(side="buy", type="market", quantity="0.5")
    order = me.api.post(f"/api/orders/{placed['id']}/cancel").json()
    assert (order["status"], order["filled_quantity"], order["remaining_quantity"]) == (
        "cancelled",
        "0.50000000",
        "1.50000000",
    )
    assert [e["status"] for e in order["events"]] == ["open", "partially_filled", "cancelled"]
    assert (me.wallet("ETH").balance, me.wallet("ETH").locked) == (D("1.5"), 0)
    assert me.wallet("USDT").balance == D("1000") - D("0.8")
    assert_invariants()


@pytest.mark.parametrize("terminal", ["cancelled", "maker", "expired"])
def test_cancel_of_a_terminal_order_is_a_conflict(history, terminal):
    me, _, ids = history
    before = me.api.get(f"/api/orders/{ids[terminal]}").json()
    response = me.api.post(f"/api/orders/{ids[terminal]}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "order_not_cancellable"
    assert me.api.get(f"/api/orders/{ids[terminal]}").json() == before
    assert_invariants()


@pytest.mark.parametrize("order_id", ["other", "987654", "abc"])
def test_cancel_of_an_order_that_is_not_the_callers_is_404(history, order_id):
    me, other, ids = history
    response = me.api.post(f"/api/orders/{ids.get(order_id, order_id)}/cancel")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "order_not_found"
    assert other.api.get(f"/api/orders/{ids['other']}").json()["status"] == "open"
    assert_invariants()


# --- GET /api/trades ------------------------------------------------------------------------------


def test_trades_are_the_callers_fills_from_their_side(market, trader):
    market_create("BTC-USDT", reference_price="30000.00")
    maker = trader(ETH="1", BTC="1")
    taker = trader(USDT="50000")
    outsider = trader()
    ask = maker.order(side="sell", type="limit", quantity="1", price="2000.00").json()
    btc_ask = maker.order(market="BTC-USDT", side="sell", type="limit", quantity="0.1", price="30000").json()
    first = taker.order(side="buy", type="market", quantity="0.25").json()
    second = taker.order(market="BTC-USDT", side="buy", type="market", quantity="0.1").json()
    third = taker.order(side="buy", type="limit", quantity="0.75", price="2000.00").json()

    taker_view = taker.api.get("/api/trades").json()
    assert taker_view["next"] is None
    rows = taker_view["results"]
    assert all(set(row) == TRADE_KEYS for row in rows)
    assert [(r["order_id"], r["market"], r["side"], r["quantity"], r["fee"], r["liquidity"]) for r in rows] == [
        (third["id"], "ETH-USDT", "buy", "0.75000000", "1.80000000", "taker"),
        (second["id"], "BTC-USDT", "buy", "0.10000000", "3.60000000", "taker"),
        (first["id"], "ETH-USDT", "buy", "0.25000000", "0.60000000", "taker"),
    ]
    assert [r["trade_id"] for r in rows] == [o["fills"][0]["trade_id"] for o in (third, second, first)]

    maker_rows = maker.api.get("/api/trades?market=ETH-USDT").json()["results"]
    assert [(r["order_id"], r["side"], r["price"], r["fee"], r["liquidity"]) for r in maker_rows] == [
        (ask["id"], "sell", "2000.00000000", "1.20000000", "maker"),
        (ask["id"], "sell", "2000.00000000", "0.40000000", "maker"),
    ]
    assert [r["order_id"] for r in maker.api.get("/api/trades?market=BTC-USDT").json()["results"]] == [btc_ask["id"]]
    assert outsider.api.get("/api/trades").json() == {"results": [], "next": None}

    paged = all_pages(taker.api, "/api/trades?limit=1")
    assert [r["trade_id"] for r in paged] == [r["trade_id"] for r in rows]
    assert_invariants()


def test_house_fills_appear_in_the_takers_trades(market, trader):
    from tests.orders.support import fund_house

    fund_house(market, base="1")
    taker = trader(USDT="1000")
    order = taker.order(side="buy", type="market", quantity="0.1").json()
    rows = taker.api.get("/api/trades").json()["results"]
    assert [(r["order_id"], r["price"], r["liquidity"]) for r in rows] == [(order["id"], "2010.00000000", "taker")]
    assert_invariants()


# --- the placement's answer --------------------------------------------------------------------


def test_the_placement_answer_is_what_reading_the_order_gives(market, trader):
    """POST /api/orders answers from the order it just committed (no re-read); the answer
    must equal GET /api/orders/{id} field for field: resting, partially filled by several
    makers, filled, expired (FOK), stopped and triggered at placement."""
    maker = trader(ETH="3", USDT="10000")
    taker = trader(USDT="20000", ETH="1")
    for price in ("2000.00", "2001.00", "2002.00"):
        assert maker.order(side="sell", type="limit", quantity="0.3", price=price).status_code == 201
    bodies = [
        taker.order(side="buy", type="limit", quantity="0.1", price="1900.00"),  # rests
        taker.order(side="buy", type="limit", quantity="1.0", price="2001.00"),  # 2 makers, rests partially
        taker.order(side="buy", type="limit", quantity="0.2", price="2002.00", time_in_force="IOC"),  # filled
        taker.order(side="buy", type="limit", quantity="5", price="2002.00", time_in_force="FOK"),  # expired
        taker.order(side="sell", type="stop_loss", quantity="0.1", stop_price="2500.00"),  # fires at once
    ]
    statuses = []
    for response in bodies:
        assert response.status_code == 201, response.content
        answer = response.json()
        assert taker.api.get(f"/api/orders/{answer['id']}").json() == answer
        statuses.append(answer["status"])
    assert statuses[:4] == ["open", "partially_filled", "filled", "expired"]
    assert len(bodies[1].json()["fills"]) == 2 and bodies[1].json()["events"][0]["status"] == "open"
    assert statuses[4] in ("filled", "partially_filled", "expired")  # sold into the resting bids
    assert_invariants()
