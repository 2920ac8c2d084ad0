from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.db import connection
from hypothesis import settings as hypothesis_settings
from pytest_django.live_server_helper import LiveServer
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken
from xdist.remote import Producer
from xdist.scheduler import LoadScheduling
from xdist.workermanage import WorkerController

from core.api.throttling import worker_rate_reset
from orders.sequencer.transport import in_process_engine_reset
from orders.streams.consumers import open_connections, snapshot_budgets
from orders.system_accounts import system_accounts_cache_clear
from tests.factories import StaffFactory, UserFactory
from tests.live_server import OneRequestAtATimeServer, serving

# No per-example deadline: on a loaded 2-core machine one slow example (a GC pause, the
# other test worker) is not a failure of the property. A real counterexample still fails,
# with the blob to reproduce it.
hypothesis_settings.register_profile("project", deadline=None, print_blob=True)
hypothesis_settings.load_profile("project")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_postgres = os.environ.get("DATABASE_URL", "").startswith("postgres")
    # scripts/test's second pass: tests that start the platform on its own embedded SQLite
    # (whatever DATABASE_URL says) ran, identically, in its first.
    embedded_done = os.environ.get("EMBEDDED_PLATFORM_TESTS") == "done"
    # The same pass: the pure engine's and the contract's tests, whatever their database
    # (none), ran in the first one too (CI's time: 20 minutes in all).
    backend_free_done = os.environ.get("BACKEND_FREE_TESTS") == "done"
    for item in items:
        if backend_free_done and _backend_free(item):
            item.add_marker(pytest.mark.skip(reason="uses no database: done in the SQLite pass"))
        if backend_free_done and any(f"/{part}" in item.path.as_posix() for part in BACKEND_INDEPENDENT_PATHS):
            item.add_marker(pytest.mark.skip(reason="checks nothing of the database: done in the SQLite pass"))
        if "postgres" in item.keywords and not on_postgres:
            # Run in the PostgreSQL pass of scripts/test (CI insists that pass happens).
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://..."))
        if "embedded" in item.keywords and embedded_done:
            item.add_marker(pytest.mark.skip(reason="runs its own embedded platform: done in the SQLite pass"))
    items[:] = _scheduled_order(items, workers=int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def _scheduled_order(items: list[pytest.Item], *, workers: int) -> list[pytest.Item]:
    """The long tests first, so that no worker runs the last ones while the others idle.
    `LongTestsSharedScheduling` deals the first tests out one at a time (position i to worker
    i % workers), so this order decides who runs what first: the whole platforms (each busy
    on both cores, ~30% slower when two run at once) all go to the first worker; each other
    long module (its tests together: a module's fixture is built once, the limits' four web
    workers take 12-24 s) to the worker with the fewest so far, a platform counting as one."""
    ranked = {rank: [item for item in items if _duration_rank(item) == rank] for rank in (0, 1, 2)}
    queues: list[list[pytest.Item]] = [[] for _ in range(max(workers, 1))]
    queues[0].extend(ranked[0])
    load = [len(queue) for queue in queues]
    modules: dict[str, list[pytest.Item]] = {}
    for item in ranked[1]:
        modules.setdefault(item.path.as_posix(), []).append(item)
    for module in modules.values():
        lightest = load.index(min(load))
        queues[lightest].extend(module)
        load[lightest] += 1
    rest = iter(ranked[2])
    ordered: list[pytest.Item] = []
    for position in range(max(len(queue) for queue in queues) * len(queues)):
        queue, turn = queues[position % len(queues)], position // len(queues)
        nxt = queue[turn] if turn < len(queue) else next(rest, None)
        if nxt is not None:
            ordered.append(nxt)
    return ordered + list(rest)


LONG_MARKERS = ("reliability", "browser")
LONG_MODULES = (
    "tests/hostile/",
    "tests/api/test_schema_conformance.py",
    "tests/bench/test_bench_smoke.py",
    "tests/orders/test_order_properties.py",
    "tests/core/test_money_columns_upgrade.py",
    "tests/config/test_broker.py",
    "tests/revenue/chain/test_chain_contract.py",
)


def _duration_rank(item: pytest.Item) -> int:
    """0: starts a whole platform; 1: other real processes, a browser, a fuzzer; 2: the rest
    (skipped tests included)."""
    if item.get_closest_marker("skip"):
        return 2
    if item.get_closest_marker("embedded"):
        return 0
    path = item.path.as_posix()
    long = any(item.get_closest_marker(name) for name in LONG_MARKERS) or any(part in path for part in LONG_MODULES)
    return 1 if long else 2


class LongTestsSharedScheduling(LoadScheduling):
    """xdist's `load` scheduling, except its first hand-out: `load` gives each worker a run
    of consecutive tests, so every long test (sorted first) went to the first worker while
    the other ran the short ones, then idled for minutes at the end of the PostgreSQL pass.
    Here the first hand-out is dealt out one test at a time (`_scheduled_order` relies on
    it); every later hand-out is `load`'s."""

    def schedule(self) -> None:
        if self.collection is not None or not self._check_nodes_have_same_collection():
            super().schedule()
            return
        collection = self.collection = next(iter(self.node2collection.values()))
        self.pending[:] = range(len(collection))
        if self.maxschedchunk is None:
            self.maxschedchunk = len(collection)
        per_node = max(2, len(collection) // len(self.nodes) // 4)
        dealt: dict[WorkerController, list[int]] = {node: [] for node in self.nodes}
        for position, index in enumerate(self.pending[: per_node * len(self.nodes)]):
            dealt[self.nodes[position % len(self.nodes)]].append(index)
        del self.pending[: per_node * len(self.nodes)]
        for node, indices in dealt.items():
            if indices:
                self.node2pending[node].extend(indices)
                node.send_runtest_some(indices)
        if not self.pending:
            for node in self.nodes:
                node.shutdown()


@pytest.hookimpl(optionalhook=True)  # a run without xdist (-p no:xdist) knows no such hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadScheduling | None:
    return LongTestsSharedScheduling(config, log) if config.getvalue("dist") == "load" else None


# The pure engine, the contract on its chain, and the conversion of an old SQLite database
# (files of its own, built in subprocesses, whatever DATABASE_URL says).
BACKEND_FREE_PATHS = ("tests/orders/engine/", "tests/revenue/chain/", "tests/core/test_money_columns_upgrade.py")
# Tests of what the database cannot change: the pages' layout on a laptop and a phone, the
# API docs rendered offline, the pages under their Content-Security-Policy (browser tests);
# tests whose processes run on a SQLite database of their own whatever DATABASE_URL says (the
# web servers' handling of proxy headers, rate limits across workers, `make run`'s topology);
# settings checked in a subprocess; a Celery worker through a Redis outage. CI's time, 20
# minutes: ~2.5 min of the PostgreSQL pass's.
BACKEND_INDEPENDENT_PATHS = (
    "tests/pages/test_browser_layout.py",
    "tests/pages/test_api_docs_offline.py",
    "tests/pages/test_browser_csp.py",
    "tests/security/test_proxy_headers_served.py",
    "tests/security/test_limits_across_workers.py",
    "tests/security/test_production_hardening.py",
    "tests/deploy/test_topology.py",
    "tests/core/test_production_settings.py",
    "tests/config/test_broker.py",
)
DATABASE_FIXTURES = {"db", "transactional_db", "live_server", "_django_db_helper"}


def _backend_free(item: pytest.Item) -> bool:
    """A test of a path that never reads the test database (BACKEND_FREE_PATHS) that asks
    for no database either."""
    path = item.path.as_posix()
    return (
        any(f"/{part}" in path for part in BACKEND_FREE_PATHS)
        and item.get_closest_marker("django_db") is None
        and not DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
    )


def _migration_data_restore() -> None:
    """Data the migrations seed (revenue streams, beat schedules). A transactional test's
    flush removes it, so tests after one on the same worker would otherwise miss it."""
    from importlib import import_module

    from django.apps import apps

    from revenue.models import RevenueStream
    from revenue.streams import STREAMS

    if RevenueStream.objects.count() < len(STREAMS):
        import_module("revenue.migrations.0002_seed_streams_and_schedules").seed(apps, None)
        import_module("revenue.migrations.0004_delivery_schedule").schedule(apps, None)
        import_module("orders.migrations.0007_inactive_orders_sweep_schedule").schedule(apps, None)
        import_module("accounts.migrations.0003_refresh_tokens_flush_schedule").schedule(apps, None)
        import_module("core.migrations.0002_expired_entries_delete_schedule").schedule(apps, None)
        import_module("orders.migrations.0013_trade_outbox_prune_schedule").schedule(apps, None)
        for coalesced in (
            "accounts.migrations.0005_periodic_runs_coalesced",
            "orders.migrations.0012_periodic_runs_coalesced",
            "revenue.migrations.0020_periodic_runs_coalesced",
        ):
            import_module(coalesced).coalesce(apps, None)


@pytest.fixture(autouse=True)
def _migration_data(request):
    uses_db = request.node.get_closest_marker("django_db") is not None or bool(
        {"db", "transactional_db", "live_server"} & set(request.fixturenames)
    )
    if uses_db:
        request.getfixturevalue("_django_db_helper")
        _migration_data_restore()
    yield


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[LiveServer]:
    """pytest-django's live server, built after the test database (pytest-django's own is
    built before it when a test names it: on in-memory SQLite it then misses the test's
    connection, and every request thread opens one of its own on the shared in-memory
    database). There the server shares the test's connection and serves one request at a
    time, only while a test runs (tests/live_server.py)."""
    addr = request.config.getvalue("liveserver") or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost"
    server = LiveServer(addr, start=False)
    if server.thread.connections_override:  # in-memory SQLite: the server shares the test's connection
        server.thread.server_class = OneRequestAtATimeServer
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _live_server_gate(request: pytest.FixtureRequest) -> Iterator[None]:
    """The live server serves during the test and is quiet before the database is flushed:
    set up after the database (so torn down before its flush)."""
    if "live_server" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    request.getfixturevalue("live_server")
    with serving():
        yield


@pytest.fixture(autouse=True)
def _fresh_system_accounts():
    # System account ids are cached per process, and so are the in-process sequencer's
    # books, the order rate's counts and the streams' snapshot budgets; each test database
    # has its own rows.
    system_accounts_cache_clear()
    in_process_engine_reset()
    worker_rate_reset()
    snapshot_budgets.reset()
    open_connections.reset()
    yield
    system_accounts_cache_clear()
    in_process_engine_reset()
    worker_rate_reset()
    snapshot_budgets.reset()
    open_connections.reset()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def staff(db):
    return StaffFactory()


def jwt_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def user_client(user) -> APIClient:
    return jwt_client(user)


@pytest.fixture
def other_client(other_user) -> APIClient:
    return jwt_client(other_user)


@pytest.fixture
def staff_client(staff) -> APIClient:
    return jwt_client(staff)


@pytest.fixture
def on_postgres() -> bool:
    return connection.vendor == "postgresql"
