"""Start-up checks of the orders app's settings: refused at start with a clear message, not
found out at the first order (docs/operations.md, "Settings refused at start")."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DatabaseError

from orders.models import Market
from orders.sequencer.shards import shards_parse, shards_uncovered


def engine_shards_problems() -> list[str]:
    """ENGINE_SHARDS as written (orders.sequencer.shards.shards_problems), then the markets
    of the database no shard owns (none before the first `migrate`)."""
    try:
        configured = shards_parse(settings.ENGINE_SHARDS)
    except ValueError as exc:
        return [str(exc)]
    try:
        symbols = list(Market.objects.values_list("symbol", flat=True))
    except DatabaseError:  # no table yet: `migrate` comes after serve_check
        return []
    uncovered = shards_uncovered(symbols, configured)
    if not uncovered:
        return []
    return [
        f"ENGINE_SHARDS: no engine shard owns the market(s) {', '.join(uncovered)} (their orders would answer"
        f" 'No such market'): name them in a shard, or let one shard take every other market ('*')"
    ]


def engine_shards_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django's system check (every manage.py command, `migrate` and `check --deploy`
    included): ENGINE_SHARDS that cannot give each market exactly one engine."""
    try:
        shards_parse(settings.ENGINE_SHARDS)
    except ValueError as exc:
        return [checks.Error(str(exc), hint="docs/matching.md, 'The sequencer'", id="orders.E001")]
    return []
