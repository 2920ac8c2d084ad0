"""JSON written fast where it is exact."""

from __future__ import annotations

import json
import operator
import re
from decimal import InvalidOperation
from itertools import accumulate, count
from typing import Any

import orjson

# json.dumps with these options builds an encoder at each call.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def json_compact(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON, the standard library's bytes (ensure_ascii off, no
    spaces): by orjson, ten times faster for an order's answer, which writes text, integers
    within 64 bits, null, booleans, lists and objects exactly so; what orjson refuses (an
    integer past 64 bits) by the standard library. A float may come out in other digits of
    the same value. Not for reading JSON back: orjson reads an integer past 64 bits as a
    float, so what carries a client's values as received (an engine command) is read by the
    standard library."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _COMPACT.encode(value).encode()


# How deep an array or object of a request may lie: the API's bodies and stream messages
# are two levels deep. The parser recurses once per level, and its RecursionError comes
# at the interpreter's recursion limit, which importing web3 raises to 100,000 (py_ecc):
# past the C stack, a segmentation fault of the process. So depth is bounded before parsing.
JSON_DEPTH_MAX = 100
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = str.maketrans({"[": "\x02", "{": "\x02", "]": "\x00", "}": "\x00"})


def json_nesting_within(text: str, *, limit: int = JSON_DEPTH_MAX) -> bool:
    """False when an array or object of `text` lies more than `limit` deep. At C speed:
    with at most `limit` brackets nothing is looked at; else, the strings taken out, the
    depth is the largest running count of opening less closing brackets."""
    if text.count("[") + text.count("{") <= limit:
        return True
    steps = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)).translate(_BRACKET_STEP).encode("latin-1")
    # After k brackets: 2 x openings so far, less k, is openings less closings.
    return max(map(operator.sub, accumulate(steps), count(1)), default=0) <= limit


def _names_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of a request, refused when it names a member twice: json.loads keeps the
    last value, so `{"quantity": "0.01", "quantity": "5"}` was a 5 ETH order while a
    proxy, a log or a client library that reads the first saw 0.01 (RFC 8259: the names
    should be unique, and readers differ on which one wins)."""
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            break
        seen.add(name)
    raise ValueError(f"JSON object names {name!r} twice")


def json_read(text: str, **options: Any) -> Any:
    """json.loads(text, **options), refusing what is nested deeper than JSON_DEPTH_MAX and
    an object that names a member twice (_names_once) with the ValueError every other text
    that is not JSON raises, so the callers' one `except ValueError` answers it as
    malformed rather than as a crash (RecursionError, or a segmentation fault past the C
    stack) or as one of its values; so is a number read with parse_float=Decimal whose
    exponent is past what a Decimal holds (InvalidOperation)."""
    if not json_nesting_within(text):
        raise ValueError(f"JSON nested deeper than {JSON_DEPTH_MAX} levels")
    try:
        return json.loads(text, object_pairs_hook=_names_once, **options)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except InvalidOperation:
        # parse_float=Decimal on a number whose exponent is past what a Decimal holds
        # (1e followed by 40 nines: valid JSON): not a ValueError, it answered 500.
        raise ValueError("a JSON number beyond what a Decimal holds") from None
