"""The embedded default cache (core.cache.AtomicDatabaseCache, no REDIS_URL): Django's
database cache with add() and incr() atomic across processes and connections, and the
API throttle counting exactly its rate through it under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import RequestFactory, override_settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from core.api.throttling import ResilientScopedRateThrottle
from core.cache import AtomicDatabaseCache

TABLE = "test_atomic_cache"
SETTINGS = {"default": {"BACKEND": "core.cache.AtomicDatabaseCache", "LOCATION": TABLE}}


def _cache() -> AtomicDatabaseCache:
    return AtomicDatabaseCache(TABLE, {})


@pytest.fixture
def table(transactional_db: Any) -> Iterator[None]:
    with override_settings(CACHES=SETTINGS):
        call_command("createcachetable", verbosity=0)
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(TABLE)}")


def test_add_incr_and_expiry_behave_as_djangos_cache(table: None) -> None:
    cache = _cache()
    assert cache.add("k", 1, 60) is True
    assert cache.add("k", 5, 60) is False
    assert cache.incr("k") == 2 and cache.incr("k", 10) == 12 and cache.decr("k", 2) == 10
    assert cache.get("k") == 10
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    cache.set("old", 3, 60)
    long_ago = connection.ops.adapt_datetimefield_value(datetime(2000, 1, 1, tzinfo=UTC))
    with connection.cursor() as cursor:  # expire it
        cursor.execute(f"UPDATE {connection.ops.quote_name(TABLE)} SET expires = %s", [long_ago])  # noqa: S608
    assert cache.get("old") is None
    with pytest.raises(ValueError, match="not found"):
        cache.incr("old")
    assert cache.add("old", 7, 60) is True  # over an expired row
    assert cache.get("old") == 7
    assert cache.add("forever", "x", None) is True and cache.get("forever") == "x"


def _together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """`count` threads, each on its own database connection, released at once."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


@pytest.mark.postgres
def test_concurrent_increments_are_never_lost(table: None) -> None:
    cache = _cache()
    cache.add("counter", 0, 300)

    def bump(_: int) -> None:
        mine = _cache()
        for _ in range(25):
            mine.incr("counter")

    _together(8, bump)
    assert cache.get("counter") == 200


@pytest.mark.postgres
def test_concurrent_adds_have_one_winner(table: None) -> None:
    assert sum(_together(8, lambda i: _cache().add("once", i, 300))) == 1


@pytest.mark.postgres
def test_the_throttle_passes_exactly_its_rate_under_concurrency(table: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "burst": "7/min"})

    class View:
        throttle_scope = "burst"

    def attempt(_: int) -> bool:
        throttle = ResilientScopedRateThrottle()
        throttle.cache = _cache()  # type: ignore[assignment]
        request = Request(RequestFactory().post("/api/x", REMOTE_ADDR="10.9.8.7"))
        request.user = type("Anonymous", (), {"is_authenticated": False, "pk": None})()  # type: ignore[assignment]
        return throttle.allow_request(request, View())

    assert sum(_together(16, attempt)) == 7


def test_add_on_a_host_whose_clock_runs_ahead_leaves_a_live_entry_alone(table: None, monkeypatch) -> None:
    # Web hosts share the table (the embedded default on PostgreSQL). add() over an expired
    # row compared the row's expiry with its own host's clock: a host a minute ahead found
    # the entry another host had just added (an API key's signature claimed for 12 s: a
    # replay refused) expired, took it over and answered True (the replay accepted).
    import time

    from django.utils import timezone

    cache = _cache()
    assert cache.add("claim", 1, 12) is True
    real_time, real_now = time.time, timezone.now
    monkeypatch.setattr(time, "time", lambda: real_time() + 60)
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=60))
    assert cache.add("claim", 2, 12) is False
    assert cache.add("other", 3, 12) is True  # what it adds lives 12 s by the database's clock
    monkeypatch.undo()
    assert cache.get("other") == 3


def test_a_full_table_never_drops_a_live_replay_claim(table: None) -> None:
    """Above MAX_ENTRIES Django's cull deleted a third of the table in key order, live
    entries included: one trader's order tickets (a claim kept a day each) pushed the API
    keys' replay claims out, and the same signed request was accepted twice within its
    window. Only expired entries are culled now."""
    from accounts.api_keys import signature_claim
    from core.cache import form_once
    from core.errors import Conflict

    settings_full = {"default": {**SETTINGS["default"], "OPTIONS": {"MAX_ENTRIES": 10}}}
    with override_settings(CACHES=settings_full, API_REPLAY_STORE="auto"):
        from django.core.cache import cache

        assert signature_claim(key_id=1, signature="ab" * 32) is True
        cache.set("an-expired-entry", 1, 60)
        long_ago = connection.ops.adapt_datetimefield_value(datetime(2000, 1, 1, tzinfo=UTC))
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {connection.ops.quote_name(TABLE)} SET expires = %s WHERE cache_key LIKE %s",  # noqa: S608
                [long_ago, "%an-expired-entry"],
            )
        for ticket in range(30):  # a trader's order tickets, far more than the table's MAX_ENTRIES
            form_once(f"order-ticket:7:{ticket}", resent=Conflict(), act=lambda: None)
        cache.set("a-set-entry", 1, 60)  # Django's set() culls the same way
        assert signature_claim(key_id=1, signature="ab" * 32) is False  # the replay is refused
        with pytest.raises(Conflict):  # and every ticket's claim still holds
            form_once("order-ticket:7:0", resent=Conflict(), act=lambda: None)
        assert cache.get("an-expired-entry") is None
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(TABLE)}")  # noqa: S608
            assert cursor.fetchone()[0] == 32  # the claim, 30 tickets, the set entry: the expired one culled


def test_expired_entries_are_deleted_by_the_retention_task(table: None) -> None:
    from core.tasks import expired_entries_delete

    with override_settings(CACHES=SETTINGS):
        from django.core.cache import cache

        for name in ("live", "stale-1", "stale-2"):
            cache.set(name, name, 60)
        cache.set("forever", 1, None)
        long_ago = connection.ops.adapt_datetimefield_value(datetime(2000, 1, 1, tzinfo=UTC))
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {connection.ops.quote_name(TABLE)} SET expires = %s WHERE cache_key LIKE %s",  # noqa: S608
                [long_ago, "%stale-%"],
            )
        assert expired_entries_delete() == 2
        assert (cache.get("live"), cache.get("forever")) == ("live", 1)
        assert expired_entries_delete() == 0
