"""orders.engine.requests.order_request_parse reads the body of POST /api/orders without
DRF; orders.api.serializers.OrderInput documents that body in the schema. Both must accept
the same bodies, give the same OrderRequest and refuse with the same messages per field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.api.exception_handler import _validation_fields
from core.errors import InvalidInput
from orders.api.serializers import OrderInput
from orders.engine.requests import OrderRequest, order_request_parse

FIELDS = ["market", "side", "type", "quantity", "price", "stop_price", "time_in_force", "client_order_id", "stp"]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),  # a JSON number with a fraction, read exactly
    st.text(max_size=70),
    st.sampled_from(
        [
            "",
            " ",
            "  ETH-USDT ",
            "buy",
            "sell",
            "limit",
            "market",
            "stop_loss",
            "take_profit",
            "GTC",
            "IOC",
            "FOK",
            "skip",
            "expire_taker",
            "expire_maker",
            "expire_both",
            "1.5",
            "x" * 64,
            "x" * 65,
            "a\x00b",
            "\ud800",
            "1" * 70,
        ]
    ),
)
_values = st.one_of(
    _scalars, st.lists(_scalars, max_size=2), st.dictionaries(st.text(max_size=3), _scalars, max_size=2)
)
_bodies = st.dictionaries(st.sampled_from([*FIELDS, "extra"]), _values, max_size=10)


def _serializer(data: object) -> tuple[OrderRequest | None, dict[str, list[str]] | None]:
    serializer = OrderInput(data=data)
    if serializer.is_valid():
        return OrderRequest(**serializer.validated_data), None
    return None, _validation_fields(serializer.errors)


def _parser(data: object) -> tuple[OrderRequest | None, dict[str, list[str]] | None]:
    try:
        return order_request_parse(data), None
    except InvalidInput as refused:
        return None, refused.fields


@settings(max_examples=600)
@given(_bodies)
def test_the_parser_and_the_serializer_agree(body: dict[str, Any]) -> None:
    assert _parser(body) == _serializer(body)


@settings(max_examples=200)
@given(_bodies.map(lambda body: {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "1", **body}))
def test_they_agree_on_nearly_valid_bodies(body: dict[str, Any]) -> None:
    assert _parser(body) == _serializer(body)


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        7,
        None,
        {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "1", "price": "2000.00"},
        {"market": " ETH-USDT ", "side": "sell", "type": "market", "quantity": 0.5, "time_in_force": None},
        {"market": 5, "side": "buy", "type": "stop_loss", "quantity": 1, "stop_price": "1900", "stp": "expire_both"},
        {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "1", "client_order_id": "  "},
        {"market": "ETH-USDT", "side": True, "type": "limit", "quantity": True},
    ],
)
def test_they_agree_on_these(body: Any) -> None:
    parsed, serialized = _parser(body), _serializer(body)
    assert parsed == serialized


def test_a_valid_body_gives_the_request() -> None:
    parsed = order_request_parse(
        {"market": " ETH-USDT ", "side": "buy", "type": "limit", "quantity": 1.5, "price": "2000.00"}
    )
    assert parsed == OrderRequest(market="ETH-USDT", side="buy", type="limit", quantity=1.5, price="2000.00")


def test_a_member_that_is_no_field_is_refused_not_dropped() -> None:
    """A misspelled optional field was dropped: {"timeInForce": "FOK"} placed a GTC order."""
    with pytest.raises(InvalidInput) as refused:
        order_request_parse(
            {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": 1, "price": "2000", "timeInForce": "FOK"}
        )
    assert refused.value.fields == {"timeInForce": ["Unknown field: this request does not take it."]}


def test_every_problem_is_reported_per_field() -> None:
    with pytest.raises(InvalidInput) as refused:
        order_request_parse({"side": "up", "quantity": [1], "client_order_id": "x" * 65})
    assert refused.value.fields == {
        "market": ["This field is required."],
        "side": ['"up" is not a valid choice.'],
        "type": ["This field is required."],
        "quantity": ["Must be a decimal number, as a string or a number."],
        "client_order_id": ["Ensure this field has no more than 64 characters."],
    }
