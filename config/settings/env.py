"""Reading settings from the environment, with typed defaults. A value that is not of its
setting's type is refused at start (ImproperlyConfigured, naming the variable): a boolean
other than 1/0, true/false, yes/no, on/off read as off, so a typo such as
`DELIVERY_ENABLED=ture` turned delivery off without a word. Every name read is recorded
(env_names_read), so that a variable no setting reads, a typo of one that does, can be
refused too (`manage.py serve_check`, from the settings' ENV_NAMES_READ)."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_read: set[str] = set()


def _get(name: str, default: str | None = None) -> str | None:
    _read.add(name)
    return os.environ.get(name, default)


def env_names_read() -> frozenset[str]:
    """Every variable the settings read (set or not)."""
    return frozenset(_read)


def env_str(name: str, default: str | None = None) -> str:
    value = _get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"The environment variable {name} is required.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = _get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value not in _TRUE | _FALSE:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: 1 or 0, true or false, yes or no, on or off.")
    return value in _TRUE


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """`minimum`: the least value that works; below it is refused (ENGINE_BATCH_MAX=0: the
    engine read no command, every order answered 503; DELIVERY_LOG_SCAN_BLOCKS=0: every
    delivery cycle failed; JWT_ACCESS_MINUTES=0: every access token expired as issued)."""
    raw = _get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} is below its least working value, {minimum}.")
    return value


def env_decimal(name: str, default: str) -> Decimal:
    raw = _get(name) or default
    try:
        return Decimal(raw)
    except InvalidOperation as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a decimal number.") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (_get(name, default) or "").split(",") if item.strip()]
