"""Replay refusal holds under concurrency: of many simultaneous presenters of one signature,
exactly one gets through, in the database store (each thread its own connection, as each
web process has) and in the Redis store."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from django.db import connection
from django.test import override_settings

from accounts.api_keys import signature_claim
from tests.environment import require

pytestmark = pytest.mark.django_db(transaction=True)

PRESENTERS = 12


def _race() -> list[bool]:
    signature = uuid.uuid4().hex * 2
    barrier = threading.Barrier(PRESENTERS)
    results: list[bool] = []
    lock = threading.Lock()

    def present() -> None:
        try:
            barrier.wait()
            claimed = signature_claim(key_id=1, signature=signature)
            with lock:
                results.append(claimed)
        finally:
            connection.close()

    threads = [threading.Thread(target=present) for _ in range(PRESENTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.postgres
@override_settings(API_REPLAY_STORE="database")
def test_exactly_one_of_concurrent_presenters_in_the_database():
    results = _race()
    assert len(results) == PRESENTERS and results.count(True) == 1


def test_exactly_one_of_concurrent_presenters_in_redis():
    url = os.environ.get("REDIS_URL", "")
    require(url.startswith("redis://"), "needs Redis: set REDIS_URL=redis://...")
    # Keys of this test's own, not a flush: FLUSHDB emptied the Redis database that other test
    # workers' platforms were using meanwhile (their broker's queued tasks with it).
    redis_cache = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    with override_settings(CACHES=redis_cache, API_REPLAY_STORE="auto"):
        results = _race()
    assert len(results) == PRESENTERS and results.count(True) == 1
