"""Query parameters: read and checked here, and described in the OpenAPI schema from the
same definition, so the schema states every range the server enforces."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from core.errors import InvalidParameter
from core.money import AMOUNT_PLACES, AMOUNT_TEXT_MAX_LENGTH, parse_amount, parse_decimal
from core.text import is_clean_name, parse_id


def query_value(request: Request, name: str) -> str | None:
    """The one value of query parameter `name`, or None when absent. Given twice it is
    refused (400): `?status=open&status=filled` was read as its last value without a word,
    a filter the caller did not mean."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidParameter(fields={name: ["Give this parameter once."]})
    return values[0] if values else None


def query_params_refused(request: Request) -> None:
    """For an endpoint that reads everything from its body: a query parameter is the
    caller's mistake, refused (400) rather than dropped (`POST /api/orders/cancel-all?market=`
    cancelled every market's orders)."""
    query_names_refused(request.query_params)


def query_params_known(request: Request, *known: str) -> None:
    """Refuses (400) a query parameter not among `known`, rather than dropping it: a filter
    under another name (`?symbol=` for `?market=`) answered the whole list."""
    query_names_refused(
        (name for name in request.query_params if name not in known),
        message=f"Not a parameter of this endpoint, which takes {', '.join(known)}.",
    )


NO_QUERY_PARAMETERS = "This endpoint takes no query parameters: send it in the body."


def query_names_refused(names: Iterable[str], *, message: str = NO_QUERY_PARAMETERS) -> None:
    """Refuses (400, `message` for each) the query parameters `names`, if any; for
    query_params_refused, the names of a request's query parameters (also a Django request's
    `GET`, where there is no DRF request: the order hot path)."""
    fields = {name: [message] for name in names}
    if fields:
        raise InvalidParameter(fields=fields)


@dataclass(frozen=True, slots=True)
class IntParam:
    """An optional integer query parameter within [minimum, maximum]."""

    name: str
    default: int
    minimum: int
    maximum: int
    description: str = ""

    def read(self, request: Request) -> int:
        return int_param(request, self.name, default=self.default, minimum=self.minimum, maximum=self.maximum)

    def openapi(self) -> OpenApiParameter:
        schema: dict[str, Any] = {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum,
            "default": self.default,
        }
        return OpenApiParameter(self.name, schema, OpenApiParameter.QUERY, description=self.description)


def int_param(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """Absent: the default. Present, even empty, it must be an integer in range (what the
    schema says: an empty value is not an integer)."""
    raw = query_value(request, name)
    if raw is None:
        return default
    value = parse_id(raw)
    if value is None or not minimum <= value <= maximum:
        raise InvalidParameter(fields={name: [f"Must be an integer from {minimum} to {maximum}."]})
    return value


def name_param(request: Request, name: str, *, max_length: int, pattern: re.Pattern[str] | None = None) -> str | None:
    """A name to filter by (a market symbol, ...): absent, or printable text of a sane
    length (and matching `pattern`, when given: what the schema states)."""
    raw = query_value(request, name)
    if raw is None:
        return None
    if not is_clean_name(raw, max_length=max_length):
        raise InvalidParameter(fields={name: [f"1 to {max_length} printable characters."]})
    if pattern is not None and not pattern.fullmatch(raw):
        raise InvalidParameter(fields={name: [f"Must match ^{pattern.pattern}$."]})
    return raw


def pattern_openapi(name: str, *, pattern: re.Pattern[str], max_length: int, description: str = "") -> OpenApiParameter:
    """The schema of a `name_param` with a pattern."""
    schema = {"type": "string", "pattern": f"^{pattern.pattern}$", "minLength": 1, "maxLength": max_length}
    return OpenApiParameter(name, schema, OpenApiParameter.QUERY, description=description)


def choice_param(request: Request, name: str, *, default: str, choices: list[str]) -> str:
    raw = query_value(request, name)
    if raw is None:
        return default
    if raw not in choices:
        raise InvalidParameter(fields={name: [f"One of {', '.join(choices)}."]})
    return raw


def enum_param(request: Request, name: str, *, choices: list[str]) -> str | None:
    """An optional filter among `choices`: absent is None; present, it must be one of them."""
    raw = query_value(request, name)
    if raw is None:
        return None
    if raw not in choices:
        raise InvalidParameter(fields={name: [f"One of {', '.join(choices)}."]})
    return raw


def enum_openapi(name: str, *, choices: list[str], description: str = "") -> OpenApiParameter:
    return OpenApiParameter(
        name, {"type": "string", "enum": list(choices)}, OpenApiParameter.QUERY, description=description
    )


# The one text form of an amount (core.money.AMOUNT_TEXT) with at most 8 significant
# decimal places (core.money.parse_amount), as the schema states it.
DECIMAL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9]+(\\.[0-9]{1,8}0*)?$",
    "maxLength": AMOUNT_TEXT_MAX_LENGTH,
    "example": "1500.25",
}


def decimal_openapi(name: str, *, required: bool, description: str = "") -> OpenApiParameter:
    return OpenApiParameter(name, DECIMAL_SCHEMA, OpenApiParameter.QUERY, required=required, description=description)


def decimal_param(request: Request, name: str, *, required: bool, maximum: Decimal) -> Decimal | None:
    """A non-negative decimal query parameter, in the one amount grammar (core.money), with
    at most 8 decimal places (nothing is silently rounded)."""
    raw = query_value(request, name)
    if raw is None:
        if required:
            raise InvalidParameter(f"{name} is required.", fields={name: ["This parameter is required."]})
        return None
    value = parse_decimal(raw)
    if value is None:
        raise InvalidParameter(f"{name} must be a number.", fields={name: ["Must be a decimal number like 1500.25."]})
    if value > maximum:
        raise InvalidParameter(f"{name} is out of range.", fields={name: [f"Must be between 0 and {maximum:f}."]})
    if parse_amount(raw) is None:  # a ninth decimal would be rounded away by the answer: refused, not rounded
        raise InvalidParameter(
            f"{name} has too many decimal places.", fields={name: [f"At most {AMOUNT_PLACES} decimal places."]}
        )
    return value
