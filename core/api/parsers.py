"""The API's request parsers: DRF's JSONParser, reading through core.encoding.json_read, so
JSON nested too deeply is refused as any other malformed body (400 malformed_request),
not a RecursionError (500) or a crash of the process. JSON is UTF-8 whatever the
Content-Type's charset says (RFC 8259, 8.1: the media type defines no charset parameter):
DRF decoded by it, so "é" sent as UTF-8 under `charset=latin-1` was stored as "Ã©", where
the order path's own parser (orders.api.hot) reads UTF-8."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

from core.encoding import json_read


class JsonParser(JSONParser):
    # How a number with a fraction or an exponent is read (None: a float, as DRF does).
    parse_float: Callable[[str], Any] | None = None

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            text = codecs.getreader("utf-8")(stream).read()
            return json_read(
                text, parse_constant=json.strict_constant if self.strict else None, parse_float=self.parse_float
            )
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class ExactJsonParser(JsonParser):
    """Numbers with a fraction or an exponent read exactly, as Decimals: for bodies whose
    numbers are amounts, which nothing may round (POST /api/orders)."""

    parse_float = Decimal
