"""Query parameters: read and checked here, and described in the OpenAPI schema from the
same definition, so the schema states every range the server enforces."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from core.errors import InvalidParameter
from core.money import parse_decimal
from core.text import is_clean_name, parse_id


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
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    value = parse_id(raw)
    if value is None or not minimum <= value <= maximum:
        raise InvalidParameter(fields={name: [f"Must be an integer from {minimum} to {maximum}."]})
    return value


def name_param(request: Request, name: str, *, max_length: int) -> str | None:
    """A name to filter by (a market symbol, ...): absent, or printable text of a sane length."""
    raw = request.query_params.get(name) or None
    if raw is not None and not is_clean_name(raw, max_length=max_length):
        raise InvalidParameter(fields={name: [f"At most {max_length} printable characters."]})
    return raw


def name_openapi(name: str, *, max_length: int, description: str = "") -> OpenApiParameter:
    """The schema of a `name_param`."""
    schema = {"type": "string", "minLength": 1, "maxLength": max_length}
    return OpenApiParameter(name, schema, OpenApiParameter.QUERY, description=description)


def choice_param(request: Request, name: str, *, default: str, choices: list[str]) -> str:
    raw = request.query_params.get(name) or default
    if raw not in choices:
        raise InvalidParameter(fields={name: [f"One of {', '.join(choices)}."]})
    return raw


def decimal_param(request: Request, name: str, *, required: bool, maximum: Decimal) -> Decimal | None:
    """A non-negative decimal query parameter, in the one amount grammar (core.money)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise InvalidParameter(f"{name} is required.", fields={name: ["This parameter is required."]})
        return None
    value = parse_decimal(raw)
    if value is None:
        raise InvalidParameter(f"{name} must be a number.", fields={name: ["Must be a decimal number like 1500.25."]})
    if value > maximum:
        raise InvalidParameter(f"{name} is out of range.", fields={name: [f"Must be between 0 and {maximum:f}."]})
    return value
