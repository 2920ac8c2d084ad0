"""Text from a request on its way to the database: checked first, so that a crafted value
is a clean 400/404 instead of a driver error (PostgreSQL refuses NUL in text; int() reads
"\u0661" (Arabic-Indic one) as 1 and raises on "\u00b2" (superscript two), which str.isdigit() accepts)."""

from __future__ import annotations

import re
import unicodedata

from core.errors import ApplicationError, InvalidInput

# Database ids: bigint, so at most 18 digits always fit; ASCII only.
ID_TEXT = re.compile(r"[0-9]{1,18}", re.ASCII)


def parse_id(raw: str) -> int | None:
    """A non-negative integer written as 1 to 18 ASCII digits (an id, a limit), or None."""
    return int(raw) if ID_TEXT.fullmatch(raw) else None


def path_id(raw: str, *, not_found: type[ApplicationError]) -> int:
    """An id from a URL (API and pages alike): text that is no id names nothing, so it is
    answered as the missing object it would name (`not_found`, a 404), never a 400."""
    parsed = parse_id(raw)
    if parsed is None:
        raise not_found()
    return parsed


def has_control_characters(text: str) -> bool:
    """NUL, other C0/C1 controls, format characters (bidi overrides, zero-width), surrogates,
    private-use and unassigned code points: never part of a name the platform issues."""
    return any(unicodedata.category(char).startswith("C") for char in text)


# A staff member's reason, kept in an audit trail (a retry's, an abandonment's, a credit's).
REASON_MAX_LENGTH = 500


def staff_reason_clean(*, reason: str, missing: str) -> str:
    """A staff member's reason as kept in the audit trail: its runs of blanks made one space;
    refused (InvalidInput on `reason`) when blank (``missing`` says what to write), longer
    than REASON_MAX_LENGTH or holding control characters."""
    why = " ".join(reason.split())
    if not why:
        raise InvalidInput(fields={"reason": [missing]})
    if len(why) > REASON_MAX_LENGTH:
        raise InvalidInput(fields={"reason": [f"At most {REASON_MAX_LENGTH} characters."]})
    if has_control_characters(why):  # a form posts it as typed: PostgreSQL refuses a NUL
        raise InvalidInput(fields={"reason": ["Text only: no control characters."]})
    return why


def is_clean_name(text: str, *, max_length: int) -> bool:
    """A name worth looking up: 1 to max_length characters, none of them a control."""
    return 0 < len(text) <= max_length and not has_control_characters(text)
