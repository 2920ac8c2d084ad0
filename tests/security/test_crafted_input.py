"""Crafted input that used to reach a query or a decoder unchecked (a 500): forged cursors,
NUL and other control characters in market symbols, non-ASCII digits in ids and limits,
and amounts that Python's Decimal reads but no client would agree on ("\u0661", "\uff11",
"1_0"). Each is refused with a 4xx in the contract's envelope (pages: a normal 404 page),
and nothing changes."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import AMOUNT_TEXT, parse_amount
from orders.models import Order, Wallet
from tests.security.conftest import SYMBOL, World, page_client

pytestmark = pytest.mark.django_db

# Each is a number to Python's Decimal (or int()), and none is an ASCII decimal.
NOT_ASCII_DECIMALS = [
    "\u0661",  # ARABIC-INDIC DIGIT ONE
    "\uff11",  # FULLWIDTH DIGIT ONE
    "1_0",  # Decimal("1_0") == 10
    "\u0967\u0966",  # DEVANAGARI ten
    " 1",
    "1 ",
    "+1",
    "1.",
    ".5",
    "1e3",
    "1E-2",
    "0x10",
    "NaN",
    "\u00b9",  # SUPERSCRIPT ONE
    "1\u00a0",  # a no-break space
]
CONTROL = ["\x00", "\x01", "\x1f", "\x7f", "\u200e", "\u202e", "ETH\x00-USDT", "ETH-USDT\x00"]


def _error(response: Any, status: int, *codes: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] in codes, body
    return body["error"]


def _cursor(text: str) -> str:
    return quote(base64.b64encode(text.encode()).decode(), safe="")


def _state() -> tuple[Any, ...]:
    return (
        sorted(Order.objects.values_list("pk", "status")),
        sorted(Wallet.objects.values_list("pk", "balance", "locked")),
    )


# --- cursors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/orders", "/api/trades"])
def test_forged_cursors_are_400_in_the_envelope(world: World, path: str) -> None:
    owner = world.api("owner")
    for forged in ("p=abc", "p=1.5", "p=-1", "p=\u00b2", "p=\u0661", "p=" + "9" * 40, "p=1&r=x", "o=x&p=1", "p=\x00"):
        response = owner.get(f"{path}?cursor={_cursor(forged)}")
        _error(response, 400, "invalid_parameter")
        assert list(response.json()["error"]["fields"]) == ["cursor"]
    _error(owner.get(f"{path}?cursor=not-base64"), 400, "invalid_parameter")
    # A genuine cursor still pages.
    for _ in range(3):
        world.api("owner").post(
            "/api/orders",
            {"market": SYMBOL, "side": "buy", "type": "limit", "price": "1500.00", "quantity": "0.01"},
            format="json",
        )
    first = owner.get(f"{path}?limit=1").json()
    if first["next"]:
        assert owner.get(first["next"]).status_code == 200


# --- market symbols and ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", CONTROL)
def test_control_characters_in_a_market_symbol(world: World, symbol: str) -> None:
    client, owner = world.api("anonymous"), world.api("owner")
    q = quote(symbol, safe="")
    for tail in ("book", "trades", "candles"):
        _error(client.get(f"/api/markets/{q}/{tail}"), 404, "market_not_found", "not_found")
    for path in ("/api/orders", "/api/trades"):
        _error(owner.get(f"{path}?market={q}"), 400, "invalid_parameter")
    staff = world.api("staff")
    before = _state()
    _error(staff.post(f"/api/admin/markets/{q}/reference-price", {"price": "1"}, format="json"), 404,
           "market_not_found", "not_found")  # fmt: skip
    order = {"market": symbol, "side": "buy", "type": "limit", "price": "1800.00", "quantity": "0.01"}
    _error(owner.post("/api/orders", order, format="json"), 400, "validation_error", "market_not_found")
    assert _state() == before


@pytest.mark.parametrize("symbol", CONTROL)
def test_control_characters_in_a_page_path_are_a_normal_404_page(world: World, symbol: str) -> None:
    client = page_client(world.owner)
    q = quote(symbol, safe="")
    for path in (f"/trade/{q}", f"/trade/{q}/live"):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert response["Content-Type"].startswith("text/html")
        assert "Not found" in response.content.decode()
    assert client.post(f"/trade/{q}/order", {"side": "buy"}).status_code == 404


def test_nul_in_any_query_parameter_is_a_400(world: World) -> None:
    _error(world.api("anonymous").get("/api/markets?x=%00"), 400, "invalid_parameter")
    _error(world.api("owner").get("/api/orders?status=%00"), 400, "invalid_parameter")
    page = page_client(world.staff)
    assert page.get("/orders/?market=%00").status_code == 400
    # The admin's search met PostgreSQL with it.
    assert page.get("/admin/orders/order/?q=%00").status_code == 400


@pytest.mark.parametrize("raw", ["\u00b2", "\u0661", "\uff11", "1\u00a0", "9" * 19])
def test_non_ascii_digits_in_ids_and_limits(world: World, raw: str) -> None:
    owner, staff, anonymous = world.api("owner"), world.api("staff"), world.api("anonymous")
    q = quote(raw, safe="")
    _error(owner.get(f"/api/orders/{q}"), 404, "order_not_found")
    _error(owner.post(f"/api/orders/{q}/cancel"), 404, "order_not_found")
    _error(anonymous.get(f"/api/markets/{SYMBOL}/book?depth={q}"), 400, "invalid_parameter")
    _error(anonymous.get(f"/api/markets/{SYMBOL}/trades?limit={q}"), 400, "invalid_parameter")
    _error(staff.post(f"/api/admin/revenue/events/{q}/retry"), 404, "revenue_event_not_found")
    _error(staff.get(f"/api/admin/revenue/onchain-failures?hours={q}"), 400, "invalid_parameter")
    assert page_client(world.owner).post(f"/orders/{q}/cancel").status_code == 302


# --- amounts: one grammar ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", NOT_ASCII_DECIMALS)
def test_the_parser_refuses_what_is_not_an_ascii_decimal(text: str) -> None:
    assert parse_amount(text) is None


@given(st.decimals(min_value=0, max_value=Decimal("1e12"), places=8, allow_nan=False, allow_infinity=False))
def test_the_parser_reads_every_ascii_decimal_exactly(value: Decimal) -> None:
    text = f"{value:f}"
    assert AMOUNT_TEXT.fullmatch(text)
    assert parse_amount(text) == value


@given(st.text(max_size=12))
def test_whatever_the_parser_accepts_is_ascii_digits_with_one_optional_point(text: str) -> None:
    if parse_amount(text) is not None:
        assert text.isascii() and text.replace(".", "", 1).isdigit() and not text.startswith(".")


def test_json_numbers_stay_accepted(world: World) -> None:
    owner = world.api("owner")
    body = {"market": SYMBOL, "side": "buy", "type": "limit", "price": 1500, "quantity": 0.01}
    assert owner.post("/api/orders", body, format="json").status_code == 201


@pytest.mark.parametrize("text", NOT_ASCII_DECIMALS)
def test_order_amounts_refuse_non_ascii_decimals(world: World, text: str) -> None:
    owner = world.api("owner")
    base = {"market": SYMBOL, "side": "buy", "type": "limit", "price": "1500.00", "quantity": "0.01"}
    before = _state()
    _error(owner.post("/api/orders", {**base, "quantity": text}, format="json"), 400, "invalid_quantity")
    _error(owner.post("/api/orders", {**base, "price": text}, format="json"), 400, "invalid_price")
    stop = {**base, "type": "stop_loss", "price": None, "stop_price": text}
    _error(owner.post("/api/orders", stop, format="json"), 400, "invalid_price")
    # The page's order ticket goes through the same parser.
    page = page_client(world.owner)
    ticket = {"side": "buy", "type": "limit", "price": "1500.00", "quantity": text, "time_in_force": ""}
    assert page.post(f"/trade/{SYMBOL}/order", ticket, HTTP_HX_REQUEST="true").status_code == 400
    assert _state() == before


@pytest.mark.parametrize("text", ["\uff11", "\u0661", "1_0", " 1", "1e3"])
def test_staff_amounts_refuse_non_ascii_decimals(world: World, text: str) -> None:
    staff = world.api("staff")
    before = _state()
    credit = {"username": world.owner.username, "asset": "USDT", "amount": text}
    error = _error(staff.post("/api/admin/wallets/credit", credit, format="json"), 400, "invalid_amount")
    assert "amount" in error["fields"]
    price = staff.post(f"/api/admin/markets/{SYMBOL}/reference-price", {"price": text}, format="json")
    _error(price, 400, "invalid_price")
    assert _state() == before
    # The same ASCII amount goes through.
    assert staff.post("/api/admin/wallets/credit", {**credit, "amount": "1"}, format="json").status_code == 200


@pytest.mark.parametrize("text", ["\uff11", "\u0661", "1_0", "1e3"])
def test_calculator_parameters_use_the_same_grammar(db: Any, text: str) -> None:
    from tests.security.conftest import api_client

    response = api_client().get("/api/flywheel/calculator", {"ttx_amount": text, "monthly_volume": "1000"})
    _error(response, 400, "invalid_parameter")
