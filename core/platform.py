"""What names one platform among others on the same servers (docs/operations.md, "Two
platforms on one server"): the prefix of its keys in a Redis database it may share with
another platform (staging beside production, two tenants), for the cache and the Celery
broker alike, and whose VAR_DIR is whose."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping


def database_digest(database: Mapping[str, object]) -> str:
    """A digest of the platform's database: its engine and name (two platforms never share
    one), not its host or port, which processes reaching it through a pooler or by another
    address spell differently."""
    identity = "|".join(str(database.get(key) or "") for key in ("ENGINE", "NAME"))
    return hashlib.blake2b(identity.encode(), digest_size=6).hexdigest()


def platform_key_prefix(database: Mapping[str, object]) -> str:
    """PLATFORM_KEY_PREFIX when set (even empty: no prefix, the names of a platform alone on
    its Redis databases), else `p` and the digest of the platform's database."""
    configured = os.environ.get("PLATFORM_KEY_PREFIX")
    if configured is not None:
        return configured.strip()
    return "p" + database_digest(database)
