"""Turning an order request into a validated order: contract rules on types, prices,
tick and step. Values that do not fit are rejected, never rounded."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, TypeVar

from core.errors import InvalidInput, unknown_fields
from core.money import (
    AMOUNT_MAX_DIGITS,
    AMOUNT_PLACES,
    AMOUNT_TEXT_MAX_LENGTH,
    EXPONENT_REFUSAL,
    EXPONENT_TEXT,
    MONEY_CONTEXT,
    QUANTUM,
    amount_refusal,
    parse_amount,
    parse_decimal,
)
from orders.engine.money import is_multiple_of
from orders.engine.types import OrderType, SelfTradePrevention, TimeInForce
from orders.engine.types import Side as OrderSide
from orders.errors import InvalidPrice, InvalidQuantity, InvalidTimeInForce


class MarketGrid(Protocol):
    """What validation needs of a market (its row, or the sequencer's copy of it)."""

    @property
    def price_tick(self) -> Decimal: ...

    @property
    def quantity_step(self) -> Decimal: ...

    @property
    def min_quantity(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class _AnyGrid:
    price_tick: Decimal = QUANTUM
    quantity_step: Decimal = QUANTUM
    min_quantity: Decimal = QUANTUM


# The grid every amount fits (8 places, positive): a request validated on it is read as sent,
# whatever a market's present tick, step and minimum (a repeat compared with what it placed).
ANY_GRID: MarketGrid = _AnyGrid()


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a client asked for, as received (strings or numbers, not yet trusted)."""

    market: str
    side: str
    type: str
    quantity: object
    price: object = None
    stop_price: object = None
    time_in_force: str | None = None
    client_order_id: str | None = None
    stp: str | None = None


@dataclass(frozen=True, slots=True)
class ValidatedOrder:
    side: OrderSide
    type: OrderType
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce
    stp: SelfTradePrevention
    client_order_id: str | None

    @property
    def is_stop(self) -> bool:
        return self.type in (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)

    def fingerprint(self, *, market_id: int) -> str:
        """Identifies the parameters, so a repeated client_order_id can be compared; ""
        without a client_order_id (nothing can repeat it: no hash to compute and store)."""
        if not self.client_order_id:
            return ""
        parts = [
            str(market_id),
            self.side,
            self.type,
            str(self.quantity.normalize()),
            "" if self.price is None else str(self.price.normalize()),
            "" if self.stop_price is None else str(self.stop_price.normalize()),
            self.time_in_force,
            self.stp,
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()


# --- the body of POST /api/orders, read without DRF's field machinery ------------------------------
#
# The same rules and messages as orders.api.serializers.OrderInput (which documents the body
# in the schema): tests/orders/api/test_order_request_parse.py compares both on random bodies.

_SIDES = frozenset(side.value for side in OrderSide)
_TYPES = frozenset(kind.value for kind in OrderType)
_TIFS = frozenset(tif.value for tif in TimeInForce)
_STPS = frozenset(stp.value for stp in SelfTradePrevention)
_MISSING = object()
REQUIRED = "This field is required."
NULL = "This field may not be null."


class _Refused(Exception):
    def __init__(self, *messages: str) -> None:
        self.messages = list(messages)


def _text(value: object, *, max_length: int, min_length: int = 0, trim: bool = True) -> str:
    """core.api.fields.StrictCharField (a JSON string only; trimmed unless `trim` is off,
    not blank, length, no NUL or surrogate characters)."""
    if value == "" or (trim and str(value).strip() == ""):
        raise _Refused("This field may not be blank.")
    if not isinstance(value, str):
        raise _Refused("Not a valid string.")
    text = value.strip() if trim else value
    problems = []
    if len(text) > max_length:
        problems.append(f"Ensure this field has no more than {max_length} characters.")
    if len(text) < min_length:
        problems.append(f"Ensure this field has at least {min_length} characters.")
    if "\x00" in text:
        problems.append("Null characters are not allowed.")
    for char in text:
        if 0xD800 <= ord(char) <= 0xDFFF:
            problems.append(f"Surrogate characters are not allowed: U+{ord(char):X}.")
            break
    if problems:
        raise _Refused(*problems)
    return text


CLIENT_ORDER_ID_MAX_LENGTH = 64


def _client_order_id(value: object) -> str:
    return _text(value, max_length=CLIENT_ORDER_ID_MAX_LENGTH, min_length=1, trim=False)


def client_order_id_valid(text: str) -> bool:
    """True when a placement takes `text` as its client_order_id (1 to 64 characters, as
    sent, neither NUL nor surrogates; control and format characters are taken): what the
    look-up by client id must find."""
    try:
        _client_order_id(text)
    except _Refused:
        return False
    return True


def _choice(value: object, *, choices: frozenset[str]) -> str:
    text = str(value)
    if text not in choices:
        raise _Refused(f'"{value}" is not a valid choice.')
    return text


def amount_text_of_number(number: Decimal) -> str:
    """A JSON number read exactly (a Decimal) as amount text that parse_amount reads back
    to the same value: its digits with 8 places when it can be an amount (with its sign when
    negative, which parse_amount refuses as it refuses a negative number). A number that
    does not fit (too many places, beyond the column) keeps its own digits when they are
    short enough, else stands for one of its kind, so that the refusal still says which
    (1e400 was told "Must be a positive decimal.")."""
    if not number.is_finite():
        return "NaN"
    if number.is_signed() or number.is_zero():  # 0E+400, -1E+400: no positive amount
        return "0" if number.is_zero() else "-1"
    if abs(number.adjusted()) <= AMOUNT_MAX_DIGITS:
        amount = parse_amount(number)
        if amount is not None:
            return f"{MONEY_CONTEXT.quantize(amount, QUANTUM):f}"
        text = f"{number:f}"
        if len(text) <= AMOUNT_TEXT_MAX_LENGTH:
            return text
    return _BEYOND_COLUMN_TEXT if number.adjusted() > 0 else _BEYOND_PLACES_TEXT


# What a positive number too long to carry as its own digits is sent as: one of its kind.
_BEYOND_COLUMN_TEXT = "1" + "0" * (AMOUNT_MAX_DIGITS - AMOUNT_PLACES)
_BEYOND_PLACES_TEXT = "0." + "0" * AMOUNT_PLACES + "1"


def amount_received(value: object) -> object:
    """An amount of the body as the engine is sent it (JSON: text, an integer or a float),
    or ValueError when it is not a decimal number, as a string or a number. A number with
    a fraction or an exponent arrives as a Decimal (read exactly: orders.api.hot, core.api.
    parsers.ExactJsonParser) and is sent as its amount text, so that nothing rounds it on
    the way (a float would: 2000.0000000000001 became 2000.0, on the price tick)."""
    if isinstance(value, Decimal):
        return amount_text_of_number(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, str | int | float)
        or (isinstance(value, str) and len(value) > AMOUNT_TEXT_MAX_LENGTH)
    ):
        raise ValueError("not an amount")
    return value


def _amount(value: object) -> object:
    try:
        return amount_received(value)
    except ValueError:
        raise _Refused("Must be a decimal number, as a string or a number.") from None


# Each field of the body: its name, whether it is required, how it is read.
_FIELD_READERS: tuple[tuple[str, bool, Callable[[object], object]], ...] = (
    ("market", True, lambda v: _text(v, max_length=33)),
    ("side", True, lambda v: _choice(v, choices=_SIDES)),
    ("type", True, lambda v: _choice(v, choices=_TYPES)),
    ("quantity", True, _amount),
    ("price", False, _amount),
    ("stop_price", False, _amount),
    ("time_in_force", False, lambda v: _choice(v, choices=_TIFS)),
    ("client_order_id", False, _client_order_id),
    ("stp", False, lambda v: _choice(v, choices=_STPS)),
)
_FIELD_NAMES = frozenset(name for name, _, _ in _FIELD_READERS)


def order_request_parse(data: object) -> OrderRequest:
    """An order body (parsed JSON) as an OrderRequest; InvalidInput (400 validation_error,
    every field's problems) when its shape is wrong. Values are checked against the market
    later (order_request_validate)."""
    if data is None:
        raise InvalidInput(fields={"non_field_errors": ["No data provided"]})
    if not isinstance(data, Mapping):
        raise InvalidInput(
            fields={"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}
        )
    found: dict[str, object] = {}
    errors: dict[str, list[str]] = {}
    for name, required, read in _FIELD_READERS:
        value = data.get(name, _MISSING)
        if value is _MISSING:
            if required:
                errors[name] = [REQUIRED]
            continue
        if value is None:
            if required:
                errors[name] = [NULL]
            else:
                found[name] = None
            continue
        try:
            found[name] = read(value)
        except _Refused as refused:
            errors[name] = refused.messages
    if not data.keys() <= _FIELD_NAMES:  # members that are no field: refused, not dropped
        errors.update(unknown_fields(data, known=_FIELD_NAMES))
    if errors:
        raise InvalidInput(fields=errors)
    return OrderRequest(**found)  # type: ignore[arg-type]


_E = TypeVar("_E", bound=StrEnum)


def _member(members: dict[object, _E], kind: type[_E], value: object) -> _E:
    """kind(value) by a look-up (the enum's call costs more than the rest of this field's
    check); an unknown value raises as the call does."""
    found = members.get(value) if isinstance(value, str) else None
    return kind(value) if found is None else found  # type: ignore[arg-type]  # raises as the call does


_SIDE_OF: dict[object, OrderSide] = {side.value: side for side in OrderSide}
_TYPE_OF: dict[object, OrderType] = {kind.value: kind for kind in OrderType}
_TIF_OF: dict[object, TimeInForce] = {tif.value: tif for tif in TimeInForce}
_STP_OF: dict[object, SelfTradePrevention] = {stp.value: stp for stp in SelfTradePrevention}


def order_request_validate(*, market: MarketGrid, request: OrderRequest) -> ValidatedOrder:
    side = _member(_SIDE_OF, OrderSide, request.side)
    order_type = _member(_TYPE_OF, OrderType, request.type)
    stp = _member(_STP_OF, SelfTradePrevention, request.stp or SelfTradePrevention.SKIP)

    quantity = parse_amount(request.quantity)
    if quantity is None or quantity <= 0:
        raise InvalidQuantity(fields={"quantity": [_amount_refusal(request.quantity)]})
    if not is_multiple_of(quantity, unit=market.quantity_step):
        raise InvalidQuantity(fields={"quantity": [f"Must be a multiple of the quantity step {market.quantity_step}."]})
    if quantity < market.min_quantity:
        raise InvalidQuantity(fields={"quantity": [f"Must be at least {market.min_quantity}."]})

    price = _price(request.price, market=market, field="price") if request.price is not None else None
    stop_price = (
        _price(request.stop_price, market=market, field="stop_price") if request.stop_price is not None else None
    )
    if order_type == OrderType.LIMIT and price is None:
        raise InvalidPrice(fields={"price": ["A limit order needs a price."]})
    if order_type != OrderType.LIMIT and price is not None:
        raise InvalidPrice(fields={"price": ["Only limit orders take a price."]})
    if order_type in (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT):
        if stop_price is None:
            raise InvalidPrice(fields={"stop_price": ["Stop orders need a stop_price."]})
    elif stop_price is not None:
        raise InvalidPrice(fields={"stop_price": ["Only stop_loss and take_profit orders take a stop_price."]})

    executes_as_market = order_type != OrderType.LIMIT
    default_tif = TimeInForce.IOC if executes_as_market else TimeInForce.GTC
    time_in_force = _member(_TIF_OF, TimeInForce, request.time_in_force or default_tif)
    if executes_as_market and time_in_force == TimeInForce.GTC:
        raise InvalidTimeInForce(
            "GTC is not allowed for orders that execute as market orders.",
            fields={"time_in_force": ["Use IOC or FOK."]},
        )
    return ValidatedOrder(
        side=side,
        type=order_type,
        quantity=quantity,
        price=price,
        stop_price=stop_price,
        time_in_force=time_in_force,
        stp=stp,
        client_order_id=request.client_order_id,
    )


def _amount_refusal(raw: object) -> str:
    """Why an amount the contract needs positive was refused: a number too large for the
    column or with too many places is told so, not that it is no decimal."""
    value = parse_decimal(raw)
    if isinstance(raw, str) and EXPONENT_TEXT.fullmatch(raw):
        return EXPONENT_REFUSAL
    if value is None or value <= 0:
        return "Must be a positive decimal."
    return amount_refusal(raw)


def _price(raw: object, *, market: MarketGrid, field: str) -> Decimal:
    value = parse_amount(raw)
    if value is None or value <= 0:
        raise InvalidPrice(fields={field: [_amount_refusal(raw)]})
    if not is_multiple_of(value, unit=market.price_tick):
        raise InvalidPrice(fields={field: [f"Must be a multiple of the price tick {market.price_tick}."]})
    return value
