"""The API's request parsers: DRF's JSONParser, reading through core.encoding.json_read, so
JSON nested too deeply is refused as any other malformed body (400 malformed_request),
not a RecursionError (500) or a crash of the process."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]  # newer than the stubs
from rest_framework.utils import json

from core.encoding import json_read


class JsonParser(JSONParser):
    # How a number with a fraction or an exponent is read (None: a float, as DRF does).
    parse_float: Callable[[str], Any] | None = None

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
            return json_read(
                text, parse_constant=json.strict_constant if self.strict else None, parse_float=self.parse_float
            )
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class ExactJsonParser(JsonParser):
    """Numbers with a fraction or an exponent read exactly, as Decimals: for bodies whose
    numbers are amounts, which nothing may round (POST /api/orders)."""

    parse_float = Decimal
