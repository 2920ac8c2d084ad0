"""Chain reachability as seen from the web process."""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def chain_health() -> str:
    """'ok' / 'down' for a configured node; 'embedded' when the chain lives inside the worker."""
    uri = settings.WEB3_PROVIDER_URI
    if not uri:
        return "embedded"
    # Imported here: this module loads with the revenue app in every process (its ready()
    # registers the check), and web3 costs about a second of CPU to import
    # (tests/core/test_process_start.py); only /healthz with a node configured needs it.
    from web3 import HTTPProvider, Web3

    try:
        return "ok" if Web3(HTTPProvider(uri, request_kwargs={"timeout": 2})).is_connected() else "down"
    except Exception:  # unreachable node: report, never raise
        logger.warning("chain health check failed", exc_info=True)
        return "down"
