from __future__ import annotations

from rest_framework.request import Request

from core.errors import InvalidParameter


def int_param(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise InvalidParameter(fields={name: [f"Must be an integer from {minimum} to {maximum}."]})
    return int(raw)


def choice_param(request: Request, name: str, *, default: str, choices: list[str]) -> str:
    raw = request.query_params.get(name) or default
    if raw not in choices:
        raise InvalidParameter(fields={name: [f"One of {', '.join(choices)}."]})
    return raw
