"""Retention of what is dead once its time has passed (docs/operations.md, "Retention").

Nothing here deletes a record: trades, orders and their events, revenue events, delivery
batches, deposits and staff actions are kept for good. What goes is state past its
expiry: the shared cache's expired entries (the embedded database cache; Redis expires its
own) and the expired sessions of the pages (Django's database sessions: a row per login,
kept after its expiry until something deletes it, which nothing did). Each app removes its
own dead rows the same way (orders: the outbox rows revenue has consumed)."""

from __future__ import annotations

import logging
from importlib import import_module

from django.conf import settings
from django.core.cache import caches

from core.cache import AtomicDatabaseCache

logger = logging.getLogger("core.retention")


def cache_expired_delete() -> int:
    """The database cache's entries past their expiry: how many were deleted (0 on Redis,
    which expires its own keys)."""
    store = caches["default"]
    return store.expired_delete() if isinstance(store, AtomicDatabaseCache) else 0


def sessions_expired_delete() -> None:
    """Expired sessions, as `manage.py clearsessions` deletes them (a no-op for a session
    engine that expires its own)."""
    engine = import_module(settings.SESSION_ENGINE)
    engine.SessionStore.clear_expired()


def expired_entries_delete() -> int:
    """The periodic removal (core.tasks.expired_entries_delete): the cache's expired
    entries and the expired sessions; the cache entries deleted."""
    entries = cache_expired_delete()
    sessions_expired_delete()
    logger.info("expired entries deleted", extra={"cache_entries": entries})
    return entries
