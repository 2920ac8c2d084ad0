"""POST /api/orders: what is accepted, what is refused (and that a refusal leaves no
order and no lock behind), defaults, insufficient funds and client_order_id idempotency."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.services import api_key_create
from core.errors import UNKNOWN_FIELD
from core.money import EXPONENT_REFUSAL
from orders.models import Market, Order, OrderEvent, Wallet
from tests.accounts.api_key_support import signed_request
from tests.factories import fund, market_create
from tests.orders.invariants import assert_invariants
from tests.orders.support import post_order, wallet

pytestmark = pytest.mark.django_db

ORDER_KEYS = {
    "id",
    "client_order_id",
    "market",
    "side",
    "type",
    "time_in_force",
    "stp",
    "price",
    "stop_price",
    "quantity",
    "filled_quantity",
    "remaining_quantity",
    "average_price",
    "fee_paid",
    "status",
    "status_reason",
    "created_at",
    "updated_at",
    "filled_at",
    "cancelled_at",
    "fills",
    "events",
}


def assert_error(response, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if field is not None:
        assert field in body["error"]["fields"], body


def assert_nothing_happened(user) -> None:
    assert not Order.objects.exists()
    assert not OrderEvent.objects.exists()
    assert not Wallet.objects.filter(user=user).exclude(locked=0).exists()
    assert_invariants()


@pytest.fixture
def funded(market, user):
    fund(user, "USDT", "100000")
    fund(user, "ETH", "10")
    return user


# --- defaults and the answer's shape -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "tif"),
    [
        ({"type": "limit", "price": "1000.00"}, "GTC"),
        ({"type": "market"}, "IOC"),
        ({"type": "stop_loss", "stop_price": "1500.00"}, "IOC"),
        ({"type": "take_profit", "stop_price": "2500.00"}, "IOC"),
    ],
)
def test_time_in_force_defaults(funded, user_client, body, tif):
    response = post_order(user_client, side="sell", quantity="0.5", **body)
    assert response.status_code == 201, response.content
    order = response.json()
    assert order["time_in_force"] == tif
    assert order["stp"] == "skip"
    assert Order.objects.get().time_in_force == tif
    assert_invariants()


def test_created_order_answer_has_the_contract_shape(funded, user_client):
    response = post_order(
        user_client, side="buy", type="limit", quantity="1.5", price="1000.00", client_order_id="mine-1"
    )
    assert response.status_code == 201
    order = response.json()
    assert set(order) == ORDER_KEYS
    assert order["id"] == str(Order.objects.get().pk)
    assert order["client_order_id"] == "mine-1"
    assert order["market"] == "ETH-USDT"
    assert (order["side"], order["type"], order["time_in_force"]) == ("buy", "limit", "GTC")
    assert order["price"] == "1000.00000000"
    assert order["stop_price"] is None
    assert order["quantity"] == "1.50000000"
    assert order["filled_quantity"] == "0.00000000"
    assert order["remaining_quantity"] == "1.50000000"
    assert order["average_price"] is None
    assert order["fee_paid"] == "0.00000000"
    assert (order["status"], order["status_reason"]) == ("open", None)
    assert order["filled_at"] is None and order["cancelled_at"] is None
    assert order["created_at"].endswith("Z")
    assert order["fills"] == []
    assert [(e["status"], e["reason"]) for e in order["events"]] == [("open", None)]
    assert order["events"][0]["at"] == order["created_at"]
    assert_invariants()


def test_numbers_are_accepted_as_well_as_strings(funded, user_client):
    response = post_order(user_client, side="buy", type="limit", quantity=1.5, price=1000)
    assert response.status_code == 201, response.content
    assert (response.json()["quantity"], response.json()["price"]) == ("1.50000000", "1000.00000000")
    assert_invariants()


# --- GTC on orders that execute as market orders --------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"type": "market"},
        {"type": "stop_loss", "stop_price": "1500.00"},
        {"type": "take_profit", "stop_price": "2500.00"},
    ],
)
def test_gtc_on_market_like_orders_is_refused(funded, user, user_client, body):
    response = post_order(user_client, side="sell", quantity="0.5", time_in_force="GTC", **body)
    assert_error(response, 400, "invalid_time_in_force", "time_in_force")
    assert_nothing_happened(user)


@pytest.mark.parametrize("tif", ["IOC", "FOK"])
def test_market_orders_accept_ioc_and_fok(funded, user_client, tif):
    response = post_order(user_client, side="sell", type="market", quantity="0.5", time_in_force=tif)
    assert response.status_code == 201
    assert response.json()["time_in_force"] == tif
    assert_invariants()


# --- price and stop_price rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "limit"}, "price"),
        ({"type": "limit", "price": None}, "price"),
        ({"type": "market", "price": "2000.00"}, "price"),
        ({"type": "stop_loss"}, "stop_price"),
        ({"type": "take_profit", "stop_price": None}, "stop_price"),
        ({"type": "stop_loss", "stop_price": "1500.00", "price": "1500.00"}, "price"),
        ({"type": "limit", "price": "2000.00", "stop_price": "1500.00"}, "stop_price"),
        ({"type": "market", "stop_price": "1500.00"}, "stop_price"),
    ],
)
def test_price_required_and_forbidden(funded, user, user_client, body, field):
    response = post_order(user_client, side="sell", quantity="0.5", **body)
    assert_error(response, 400, "invalid_price", field)
    assert_nothing_happened(user)


# --- tick, step and minimum: rejected, never rounded -----------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"price": "2000.001"}, "invalid_price", "price"),
        ({"price": "2000.009"}, "invalid_price", "price"),
        ({"price": 2000.005}, "invalid_price", "price"),
        ({"price": "0"}, "invalid_price", "price"),
        ({"price": "-2000.00"}, "invalid_price", "price"),
        ({"price": "abc"}, "invalid_price", "price"),
        ({"price": "2000.000000001"}, "invalid_price", "price"),
        ({"quantity": "0.00015"}, "invalid_quantity", "quantity"),
        ({"quantity": "1.00001"}, "invalid_quantity", "quantity"),
        ({"quantity": 0.00015}, "invalid_quantity", "quantity"),
        ({"quantity": "0"}, "invalid_quantity", "quantity"),
        ({"quantity": "-1"}, "invalid_quantity", "quantity"),
        ({"quantity": "0.000000001"}, "invalid_quantity", "quantity"),
        ({"quantity": "NaN"}, "invalid_quantity", "quantity"),
        ({"quantity": "Infinity"}, "invalid_quantity", "quantity"),
        ({"quantity": "1e40"}, "invalid_quantity", "quantity"),
    ],
)
def test_off_grid_values_are_rejected_not_rounded(funded, user, user_client, body, code, field):
    request = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00", **body}
    response = post_order(user_client, **request)
    assert_error(response, 400, code, field)
    assert_nothing_happened(user)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"quantity": "1" * 23}, "quantity", "Too large: at most 22 digits before the decimal point."),
        ({"quantity": 1e25}, "quantity", "Too large: at most 22 digits before the decimal point."),
        ({"price": "9" * 29}, "price", "Too large: at most 22 digits before the decimal point."),
        ({"price": "2000.000000001"}, "price", "At most 8 decimal places."),
        ({"quantity": 1.123456789}, "quantity", "At most 8 decimal places."),
        ({"quantity": "0"}, "quantity", "Must be a positive decimal."),
        ({"price": "-1"}, "price", "Must be a positive decimal."),
        ({"price": "abc"}, "price", "Must be a positive decimal."),
        ({"quantity": 1e308}, "quantity", "Too large: at most 22 digits before the decimal point."),
        # What an HTML number field and JavaScript's String() write: "Must be a positive
        # decimal." said nothing a trader who typed 1e25 could act on.
        ({"quantity": "1e25"}, "quantity", EXPONENT_REFUSAL),
        ({"price": "2E+3"}, "price", EXPONENT_REFUSAL),
    ],
)
def test_a_refused_amount_says_what_is_wrong_with_it(funded, user, user_client, body, field, message):
    # A 29-digit price was told "Must be a positive decimal.", as if it were no number.
    request = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00", **body}
    response = post_order(user_client, **request)
    code = "invalid_quantity" if field == "quantity" else "invalid_price"
    assert_error(response, 400, code, field)
    assert response.json()["error"]["fields"][field] == [message]
    assert_nothing_happened(user)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("1e400", "Too large: at most 22 digits before the decimal point."),
        ("1E+65", "Too large: at most 22 digits before the decimal point."),
        ("1e-400", "At most 8 decimal places."),
        ("-1e400", "Must be a positive decimal."),
        ("0e400", "Must be a positive decimal."),
    ],
)
def test_a_json_number_beyond_any_amount_says_which_way(funded, user, user_client, number, message):
    # Too long for its own digits, such a number was sent on as "NaN": 1e400 was told
    # "Must be a positive decimal.", as if it were no number.
    body = f'{{"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": {number}, "price": "2000.00"}}'
    response = user_client.post("/api/orders", body, content_type="application/json")
    assert_error(response, 400, "invalid_quantity", "quantity")
    assert response.json()["error"]["fields"]["quantity"] == [message]
    assert_nothing_happened(user)


def test_off_tick_stop_price_is_rejected(funded, user, user_client):
    response = post_order(user_client, side="sell", type="stop_loss", quantity="1", stop_price="1500.005")
    assert_error(response, 400, "invalid_price", "stop_price")
    assert_nothing_happened(user)


def test_quantity_below_the_market_minimum_is_rejected(user, user_client):
    market_create("BTC-USDT", quantity_step="0.0001", min_quantity="0.001", reference_price="30000.00")
    fund(user, "BTC", "1")
    below = post_order(user_client, market="BTC-USDT", side="sell", type="limit", quantity="0.0009", price="30000")
    assert_error(below, 400, "invalid_quantity", "quantity")
    assert_nothing_happened(user)
    at_minimum = post_order(user_client, market="BTC-USDT", side="sell", type="limit", quantity="0.001", price="30000")
    assert at_minimum.status_code == 201
    assert at_minimum.json()["quantity"] == "0.00100000"
    assert_invariants()


def test_unknown_market_in_the_body_is_a_400(funded, user, user_client):
    response = post_order(user_client, market="DOGE-USDT", side="buy", type="limit", quantity="1", price="1")
    assert_error(response, 400, "market_not_found", "market")
    assert_nothing_happened(user)


@pytest.mark.parametrize(
    "body",
    [
        {"side": "hold", "type": "limit", "quantity": "1", "price": "1"},
        {"side": "buy", "type": "iceberg", "quantity": "1", "price": "1"},
        {"side": "buy", "type": "limit", "price": "1"},
        {"side": "buy", "type": "limit", "quantity": ["1"], "price": "1"},
        {"side": "buy", "type": "limit", "quantity": True, "price": "1"},
        {"side": "buy", "type": "limit", "quantity": "1", "price": {"v": 1}},
        {"side": "buy", "type": "limit", "quantity": "1", "price": "1", "time_in_force": "GTD"},
        {"side": "buy", "type": "limit", "quantity": "1", "price": "1", "stp": "none"},
        {"side": "buy", "type": "limit", "quantity": "1", "price": "1", "client_order_id": "x" * 65},
        {"side": "buy", "type": "limit", "quantity": "1", "price": "1", "client_order_id": ""},
        {"side": "buy", "type": "limit", "quantity": "1" * 65, "price": "1"},
    ],
)
def test_malformed_fields_are_validation_errors(funded, user, user_client, body):
    response = post_order(user_client, **body)
    assert_error(response, 400, "validation_error")
    assert response.json()["error"]["fields"]
    assert_nothing_happened(user)


def test_non_json_body_is_a_400(funded, user, user_client):
    response = user_client.post("/api/orders", data="{not json", content_type="application/json")
    assert_error(response, 400, "malformed_request")
    assert_nothing_happened(user)


@pytest.mark.parametrize("door", ["token", "session"])  # the hot path, the DRF view
def test_a_field_given_twice_is_refused_not_read_as_one_of_its_values(funded, user, user_client, door):
    """json.loads keeps the last: this body was a 5 ETH order, where whatever read its first
    quantity (a proxy, a log, the client's own check) saw 0.01."""
    client = user_client if door == "token" else _session_client(user)
    body = '{"market": "ETH-USDT", "side": "buy", "type": "limit", "price": "1000", "quantity": "0.01", "quantity": 5}'
    response = client.post("/api/orders", data=body, content_type="application/json")
    assert_error(response, 400, "malformed_request")
    assert "twice" in response.json()["error"]["message"]
    assert_nothing_happened(user)


@pytest.mark.parametrize("door", ["token", "session"])
@pytest.mark.parametrize(
    ("extra", "meant"),
    [
        ({"timeInForce": "FOK"}, "a FOK order rested GTC"),
        ({"clientOrderId": "bot-1"}, "a retry placed a second order"),
        ({"stop_price ": "1500.00"}, "a stray space"),
    ],
)
def test_a_field_the_order_does_not_take_is_refused_not_dropped(funded, user, user_client, door, extra, meant):
    client = user_client if door == "token" else _session_client(user)
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00", **extra}
    response = client.post("/api/orders", data=json.dumps(body), content_type="application/json")
    assert_error(response, 400, "validation_error")
    assert response.json()["error"]["fields"] == {name: [UNKNOWN_FIELD] for name in extra}
    assert_nothing_happened(user)


def test_unknown_fields_are_named_with_the_other_problems(funded, user, user_client):
    response = post_order(user_client, side="up", type="limit", quantity="0.1", price="1000.00", tif="IOC")
    assert_error(response, 400, "validation_error")
    assert set(response.json()["error"]["fields"]) == {"side", "tif"}
    assert_nothing_happened(user)


# JSON numbers, written as raw bodies: a float would round them (2000.0000000000001 is the
# float 2000.0), and nothing is silently rounded.
NUMBER_BODY = '{"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": %s, "price": %s}'


def _session_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("door", ["token", "session"])  # the hot path, the DRF view
@pytest.mark.parametrize(
    ("quantity", "price", "code", "field"),
    [
        ("0.1", "1900.0000000000001", "invalid_price", "price"),
        ("0.10000000000000001", "1900.00", "invalid_quantity", "quantity"),
        ("1.00000000000000000001", "1900.00", "invalid_quantity", "quantity"),
        ("0.1", "1.9000000000000000000001e3", "invalid_price", "price"),
    ],
)
def test_json_numbers_are_not_rounded(funded, user, user_client, door, quantity, price, code, field):
    client = user_client if door == "token" else _session_client(user)
    response = client.post("/api/orders", data=NUMBER_BODY % (quantity, price), content_type="application/json")
    assert_error(response, 400, code, field)
    assert_nothing_happened(user)


@pytest.mark.parametrize("door", ["token", "session"])
def test_json_numbers_are_read_exactly(funded, user, user_client, door):
    client = user_client if door == "token" else _session_client(user)
    response = client.post("/api/orders", data=NUMBER_BODY % ("1E-1", "1900.10"), content_type="application/json")
    assert response.status_code == 201, response.content
    assert (response.json()["quantity"], response.json()["price"]) == ("0.10000000", "1900.10000000")
    # The column's largest price, as a number: exact, so refused for the funds (a float
    # would have read 1e22, beyond the column).
    huge = client.post(
        "/api/orders", data=NUMBER_BODY % ("1", "9999999999999999999999.99"), content_type="application/json"
    )
    assert_error(huge, 400, "insufficient_funds")
    assert Order.objects.get().price == Decimal("1900.10")
    assert_invariants()


def test_placing_needs_credentials(market, api_client):
    response = post_order(api_client, side="buy", type="limit", quantity="1", price="1")
    assert_error(response, 401, "not_authenticated")
    assert not Order.objects.exists()


# --- insufficient funds --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asset", "enough", "body"),
    [
        # 1 x 2000 + 12 bps taker fee (2.4)
        ("USDT", "2002.4", {"side": "buy", "type": "limit", "price": "2000.00"}),
        # 1 x reference 2000 x (1 + 5% guard) = 2100, + 12 bps (2.52)
        ("USDT", "2102.52", {"side": "buy", "type": "market"}),
        ("USDT", "2102.52", {"side": "buy", "type": "market", "time_in_force": "FOK"}),
        ("ETH", "1", {"side": "sell", "type": "limit", "price": "2000.00"}),
        ("ETH", "1", {"side": "sell", "type": "market"}),
        ("ETH", "1", {"side": "sell", "type": "stop_loss", "stop_price": "1500.00"}),
        # a buy stop locks at the higher of reference and stop price: 2200 x 1.05 = 2310, + 2.772
        ("USDT", "2312.772", {"side": "buy", "type": "stop_loss", "stop_price": "2200.00"}),
    ],
)
def test_insufficient_funds_creates_nothing_and_locks_nothing(market, user, user_client, asset, enough, body):
    one_short = Decimal(enough) - Decimal("0.00000001")
    fund(user, asset, one_short)
    refused = post_order(user_client, quantity="1", **body)
    assert_error(refused, 400, "insufficient_funds")
    # The message says what to fix: the asset, what the order locks and what is available.
    assert refused.json()["error"]["message"] == (
        f"Not enough available {asset}: this order locks {Decimal(enough):.8f} {asset}"
        f" and {one_short:.8f} {asset} is available."
    )
    assert_nothing_happened(user)
    assert wallet(user, asset).balance == one_short

    fund(user, asset, "0.00000001")
    accepted = post_order(user_client, quantity="1", **body)
    assert accepted.status_code == 201, accepted.content
    order = Order.objects.get()
    if order.status in ("open", "pending_trigger"):
        # Exactly the documented lock, all of the available funds.
        assert order.locked_amount == Decimal(enough)
        assert wallet(user, asset).locked == Decimal(enough)
    else:
        # A market order that found nothing expired and released its lock.
        assert (order.status, order.locked_amount, wallet(user, asset).locked) == ("expired", 0, 0)
    assert_invariants()


def test_funds_locked_by_a_resting_order_are_not_available(market, user, user_client):
    fund(user, "ETH", "1")
    assert post_order(user_client, side="sell", type="limit", quantity="0.6", price="2500.00").status_code == 201
    refused = post_order(user_client, side="sell", type="limit", quantity="0.5", price="2500.00")
    assert_error(refused, 400, "insufficient_funds")
    assert Order.objects.count() == 1
    assert wallet(user, "ETH").locked == Decimal("0.6")
    assert post_order(user_client, side="sell", type="limit", quantity="0.4", price="2500.00").status_code == 201
    assert wallet(user, "ETH").locked == Decimal("1")
    assert_invariants()


# --- client_order_id -------------------------------------------------------------------------


def test_repeating_a_client_order_id_with_the_same_parameters_returns_the_original(market, user, user_client):
    # Exactly enough for one order: a second order would be refused for funds.
    fund(user, "USDT", "2002.4")
    body = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00", "client_order_id": "abc-1"}
    first = post_order(user_client, **body)
    assert first.status_code == 201
    # The same parameters written differently are the same parameters.
    variants = (body, {**body, "quantity": "1.0000", "price": 2000}, {**body, "time_in_force": "GTC", "stp": "skip"})
    for variant in variants:
        again = post_order(user_client, **variant)
        assert again.status_code == 200, again.content
        assert again.json()["id"] == first.json()["id"]
        assert again.json() == first.json()
    assert Order.objects.count() == 1
    assert wallet(user, "USDT").locked == Decimal("2002.4")
    assert_invariants()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"is_active": False}, "market_inactive"),
        ({"price_tick": Decimal("3.00")}, "invalid_price"),
        ({"quantity_step": Decimal("0.3")}, "invalid_quantity"),
        ({"min_quantity": Decimal("5")}, "invalid_quantity"),
    ],
)
def test_a_repeat_after_the_market_changed_answers_the_order_it_placed(market, user, user_client, change, code):
    """The retry a client sends after a 503 or a timeout (docs/api.md) must say whether its
    order was placed: once the market was halted, or its tick, step or minimum changed, it
    was refused as a new placement (400), as if nothing had been, while the order it placed
    rested on (locking its funds)."""
    fund(user, "USDT", "5000")
    body = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00", "client_order_id": "abc-1"}
    first = post_order(user_client, **body)
    assert first.status_code == 201
    Market.objects.filter(pk=market.pk).update(**change)
    again = post_order(user_client, **body)
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert_error(post_order(user_client, **{**body, "client_order_id": "abc-2"}), 400, code)
    assert_error(post_order(user_client, **{**body, "quantity": "2"}), 409, "duplicate_client_order_id")
    assert Order.objects.count() == 1
    assert_invariants()


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": "2"},
        {"price": "1999.99"},
        {"side": "sell"},
        {"type": "market", "price": None},
        {"time_in_force": "IOC"},
        {"stp": "expire_taker"},
        {"market": "BTC-USDT"},
    ],
)
def test_same_client_order_id_with_other_parameters_is_a_conflict(market, user, user_client, change):
    market_create("BTC-USDT", reference_price="30000.00")
    fund(user, "USDT", "100000")
    fund(user, "ETH", "10")
    body = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00", "client_order_id": "abc-1"}
    assert post_order(user_client, **body).status_code == 201
    response = post_order(user_client, **{**body, **change})
    assert_error(response, 409, "duplicate_client_order_id")
    assert Order.objects.count() == 1
    assert_invariants()


def test_only_an_order_with_a_client_order_id_stores_its_parameters_fingerprint(market, user, user_client):
    fund(user, "USDT", "5000")
    body = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00"}
    plain = post_order(user_client, **body).json()
    named = post_order(user_client, **body, client_order_id="fp-1").json()
    assert Order.objects.get(pk=plain["id"]).request_fingerprint == ""  # nothing can repeat it
    assert len(Order.objects.get(pk=named["id"]).request_fingerprint) == 64
    assert post_order(user_client, **{**body, "quantity": "2"}, client_order_id="fp-1").status_code == 409


def test_client_order_ids_are_per_user(market, user, other_user, user_client, other_client):
    fund(user, "USDT", "5000")
    fund(other_user, "USDT", "5000")
    body = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00", "client_order_id": "shared"}
    mine = post_order(user_client, **body)
    theirs = post_order(other_client, **body)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert_invariants()


def test_repeat_of_a_traded_order_returns_its_current_state(market, user, other_user, user_client, other_client):
    fund(user, "ETH", "1")
    fund(other_user, "USDT", "5000")
    body = {"side": "sell", "type": "limit", "quantity": "1", "price": "2000.00", "client_order_id": "s-1"}
    assert post_order(user_client, **body).json()["status"] == "open"
    assert post_order(other_client, side="buy", type="market", quantity="1").json()["status"] == "filled"
    again = post_order(user_client, **body)
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["filled_quantity"]) == ("filled", "1.00000000")
    assert Order.objects.filter(user=user).count() == 1
    assert_invariants()


def test_a_refused_request_does_not_burn_its_client_order_id(market, user, user_client):
    body = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00", "client_order_id": "retry-me"}
    assert_error(post_order(user_client, **body), 400, "insufficient_funds")
    fund(user, "USDT", "2002.4")
    assert post_order(user_client, **body).status_code == 201
    assert Order.objects.get().client_order_id == "retry-me"
    assert_invariants()


@pytest.mark.parametrize(
    "change",
    [{"is_active": False}, {"min_quantity": Decimal("2")}],
    ids=["market halted", "minimum raised"],
)
def test_a_repeat_answers_the_original_order_after_the_market_changed(market, user, user_client, change):
    """A client that had no answer (a 503, a timeout) retries with the same client_order_id:
    the order it placed is answered (200), even when the market was halted or its minimum
    raised meanwhile; a new order would be refused for that, the retry is not one. It was
    refused (400 market_inactive / invalid_quantity), telling the client that nothing was
    placed while its order rested on the book."""
    fund(user, "USDT", "2002.4")
    body = {"side": "buy", "type": "limit", "quantity": "1", "price": "2000.00", "client_order_id": "retry-1"}
    first = post_order(user_client, **body)
    assert first.status_code == 201
    type(market).objects.filter(pk=market.pk).update(**change)
    again = post_order(user_client, **body)
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    # Other parameters under the same id are still a conflict; a new order is still refused.
    assert_error(post_order(user_client, **{**body, "price": "1999.00"}), 409, "duplicate_client_order_id")
    refused = post_order(user_client, **{**body, "client_order_id": "retry-2"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == ("market_inactive" if "is_active" in change else "invalid_quantity")
    assert Order.objects.count() == 1
    assert_invariants()


@pytest.mark.parametrize("credentials", ["token", "api_key", "session"])
def test_a_query_string_on_a_placement_is_refused_not_dropped(market, trader, credentials):
    """A placement reads its body only. `?time_in_force=FOK` (parameters in the query, as
    some exchanges' APIs take them) was dropped: a GTC order rested on the book, where the
    bot meant kill-or-fill."""
    alice = trader(USDT="5000")
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.01", "price": "1000.00"}
    path = "/api/orders?time_in_force=FOK"
    if credentials == "api_key":
        api_key, secret = api_key_create(user=alice.user, label="bot", permissions=["read", "trade"])
        response = signed_request(APIClient(), api_key.key, secret, "POST", path, body)
    elif credentials == "session":
        client = APIClient()
        client.force_login(alice.user)
        response = client.post(path, body, format="json")
    else:
        response = alice.api.post(path, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and list(error["fields"]) == ["time_in_force"]
    assert not Order.objects.filter(user=alice.user).exists()
    assert_invariants()
