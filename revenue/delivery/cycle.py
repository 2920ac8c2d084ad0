"""What one delivery cycle carries along: its counters, and raw node calls whose
transport failures are reported as ChainUnavailable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from revenue.chain.client import ChainUnavailable, is_connection_failure


@dataclass
class CycleCounters:
    batches_sent: int = 0
    events_sent: int = 0
    items_sent: int = 0
    events_confirmed: int = 0
    events_failed: int = 0
    events_given_up: int = 0  # failed past a lowered DELIVERY_MAX_ATTEMPTS: critical
    events_carried: int = 0
    events_held: int = 0  # their share more than the signer can pay: left out until it can
    events_released: int = 0  # held, and fitting the signer's balance again
    bundles_formed: int = 0
    batches_mined: int = 0
    batches_finalized: int = 0
    items_refused: int = 0
    rebroadcasts: int = 0
    replacements: int = 0
    rebuilds: int = 0
    gaps_filled: int = 0
    reorgs_detected: int = 0
    reorged_batches: int = 0
    events_taken_back: int = 0
    adopted_batches: int = 0
    notes: list[str] = field(default_factory=list)


def chain_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """A raw web3 call whose transport failure is reported as ChainUnavailable (transient)."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        if is_connection_failure(exc):
            raise ChainUnavailable(f"chain node unavailable: {type(exc).__name__}: {exc}") from exc
        raise
