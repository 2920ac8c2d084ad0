"""The matching engine as a process (docs/matching.md, "The sequencer"): killed in the
middle of a batch under load, failed over to a standby, or down altogether.

- Killed mid-batch (SIGKILL) and started again: every order that was acknowledged is in
  the database, none twice (clients retry with their client_order_id), and the ledger
  balances; the restarted engine rebuilt its books from the database.
- Failover: a warm standby engine of the same shard (its books loaded while standing by,
  kept current) takes over within 5 s of the active one's death, with a catch-up of the
  last changes and the same guarantees.
- Down: an order answers 503 `service_unavailable` with Retry-After, at once, never a hang.
- Stopped (SIGSTOP: a paused VM, a stalled host): an order answers 503 once the web
  worker's wait is over, and is not placed when the engine resumes (a client without a
  client_order_id would retry it and place it twice). A leader frozen under load with a
  standby: the standby ends its sessions and takes over within 5 s, web workers stop
  sending to the frozen one (heartbeats), and once thawed it is fenced and stands by.
- Hung (its loop waiting on a lock nobody releases): the engine's watchdog ends the
  process, with every thread's traceback in its log.
- Fenced: an engine whose session of the shard's lock ended (the engine itself alive) while
  a standby took over commits nothing more on its books, which no longer hold what the new
  leader writes: production's endpoints, one per engine, every web worker connected to both."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter

import pytest

from bench.api_load import WebServer
from bench.infra import EngineProcess, free_port
from tests.reliability.harness import (
    Figures,
    HttpClient,
    Platform,
    RetryPolicy,
    Rig,
    Trader,
    assert_platform_sound,
    engine_leader_pid,
    log,
    traders_join,
    traffic_figures,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]
TRADERS = 6
_TAKEOVER = re.compile(rb"leading on .*standing by; (?P<orders>\d+) changed orders caught up in (?P<s>[\d.]+) s\)")


def _traders(server_port: int, seed: dict, *, stop: threading.Event, deadline: float) -> list[Trader]:
    return [
        Trader(
            i,
            port=server_port,
            token=seed["traders"][i]["token"],
            seed=11,
            placements=None,
            stop=stop,
            deadline=deadline,
            timeout=30,
            # 503 while no engine answers, or no answer at all: the same request with the
            # same client_order_id, which can never place twice.
            retry=RetryPolicy(statuses=frozenset({503}), transport=True, patience=30, pause=0.2),
        )
        for i in range(TRADERS)
    ]


def _two_engines_under_load(
    rig: Rig, **env: str
) -> tuple[Platform, tuple[EngineProcess, EngineProcess], WebServer, threading.Event, list[Trader]]:
    """Production's shape: one tcp endpoint per engine, every web worker connected to both;
    the first engine leads, the second stands by with its books loaded; the traders started."""
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    platform = rig.platform(seed={"traders": TRADERS}, ENGINE_SHARDS=f"main=*@{','.join(endpoints)}", **env)
    leader = rig.engine(platform, name="engine-a", bind=endpoints[0])
    standby = rig.engine(platform, name="engine-b", bind=endpoints[1], wait=False)
    wait_until(lambda: b" standing by: " in standby.log_path.read_bytes(), what="the standby's books", timeout=60)
    server = rig.web(platform, workers=2, threads=4)
    stop = threading.Event()
    traders = _traders(server.port, platform.seed, stop=stop, deadline=time.monotonic() + 120)
    for trader in traders:
        trader.start()
    return platform, (leader, standby), server, stop, traders


def _check_exactly_once(platform, traders: list[Trader], figures: Figures) -> None:
    """Every acknowledged placement is in the database exactly once, as acknowledged."""
    placements = [p for t in traders for p in t.placements]
    acknowledged = [p for p in placements if p.acknowledged]
    rows = platform.query("SELECT client_order_id, id FROM orders_order WHERE client_order_id IS NOT NULL")
    by_client_id = Counter(client_id for client_id, _ in rows)
    ids = dict(rows)
    figures.update(placements=len(placements), acknowledged=len(acknowledged))
    assert acknowledged, "nothing was acknowledged"
    doubled = [cid for cid, count in by_client_id.items() if count > 1]
    assert not doubled, doubled  # the unique constraint, checked anyway
    lost = [p.client_order_id for p in acknowledged if p.client_order_id not in ids]
    assert not lost, f"acknowledged but not in the database: {lost[:10]}"
    differing = [
        p.client_order_id
        for p in acknowledged
        if isinstance(p.answer.body, dict) and str(p.answer.body.get("id")) != str(ids[p.client_order_id])
    ]
    assert not differing, differing[:10]


def _traffic_checked(platform, port: int, traders: list[Trader], figures: Figures, **counts: int) -> None:
    """After the traders stopped: no 5xx but 503, every acknowledged order exactly once,
    the platform's invariants."""
    traders_join(traders, timeout=90)
    figures.update(traffic_figures(traders), **counts)
    attempts = [a for t in traders for a in t.attempts]
    assert not [a for a in attempts if a.status >= 500 and a.status != 503], "a 5xx other than 503"
    _check_exactly_once(platform, traders, figures)
    assert_platform_sound(figures, platform, port=port, staff_token=platform.seed["staff_token"])
    figures.passed()


@pytest.mark.timeout(300)
def test_engine_killed_mid_batch_under_load_loses_nothing_acknowledged(rig: Rig, figures: Figures) -> None:
    platform = rig.platform(seed={"traders": TRADERS})
    engine = rig.engine(platform)
    server = rig.web(platform, workers=2, threads=4)
    stop = threading.Event()
    traders = _traders(server.port, platform.seed, stop=stop, deadline=time.monotonic() + 120)
    for trader in traders:
        trader.start()
    kills = 0
    try:
        for round_ in range(3):
            wanted = 60 * (round_ + 1)
            wait_until(
                lambda: sum(len(t.placements) for t in traders) >= wanted,  # noqa: B023  (called at once)
                what="orders flowing before the kill",
                timeout=60,
            )
            engine.kill()  # SIGKILL, whatever batch it is in
            kills += 1
            log(f"engine killed ({kills}); starting it again")
            restart = engine.start(wait=False).wait_leading(timeout=30)
            figures.setdefault("restart_s", []).append(round(restart, 2))
        wait_until(
            lambda: sum(len(t.placements) for t in traders) >= 60 * (kills + 1),
            what="orders flowing after the last restart",
            timeout=60,
        )
    finally:
        stop.set()
    _traffic_checked(platform, server.port, traders, figures, kills=kills)


@pytest.mark.timeout(300)
def test_a_standby_engine_takes_over_within_5_seconds(rig: Rig, figures: Figures) -> None:
    platform = rig.platform(seed={"traders": TRADERS})
    active = rig.engine(platform, name="engine-a")
    standby = rig.engine(platform, name="engine-b", wait=False)
    server = rig.web(platform, workers=2, threads=4)
    assert not standby.leading(), "two engines lead one shard"
    # Warm: the standby loads the books while the active engine leads, and keeps them current.
    wait_until(lambda: b" standing by: " in standby.log_path.read_bytes(), what="the standby's books", timeout=60)
    stop = threading.Event()
    traders = _traders(server.port, platform.seed, stop=stop, deadline=time.monotonic() + 90)
    for trader in traders:
        trader.start()
    try:
        wait_until(lambda: sum(len(t.placements) for t in traders) >= 60, what="orders flowing", timeout=60)
        killed_at = time.monotonic()
        active.kill()
        wait_until(standby.leading, what="the standby to take over", timeout=10)
        # The first order sent after the kill and acknowledged: the standby answered it.
        answered = wait_until(
            lambda: min(
                (
                    a.at
                    for t in traders
                    for a in t.attempts
                    if a.op.startswith("place") and a.at - a.seconds > killed_at and 200 <= a.status < 300
                ),
                default=None,
            ),
            what="an order answered by the standby",
            timeout=15,
        )
        failover = answered - killed_at
        figures["failover_s"] = round(failover, 3)
        # It took over with a catch-up of what the active engine committed since its last
        # read, not a load of the books (orders.sequencer.standby).
        takeover = _TAKEOVER.search(standby.log_path.read_bytes())
        assert takeover, "the standby's takeover line"
        figures.update(takeover_caught_up_orders=int(takeover["orders"]), takeover_catch_up_s=float(takeover["s"]))
        log(f"failover: {failover:.2f} s")
        wait_until(
            lambda: sum(len(t.placements) for t in traders) >= 120, what="orders flowing after failover", timeout=60
        )
    finally:
        stop.set()
    traders_join(traders, timeout=90)
    figures.update(traffic_figures(traders))
    assert failover <= 5.0, f"failover took {failover:.2f} s"
    _check_exactly_once(platform, traders, figures)
    assert_platform_sound(figures, platform, port=server.port, staff_token=platform.seed["staff_token"])
    figures.passed()


@pytest.mark.timeout(180)
def test_with_the_engine_down_orders_answer_503_at_once(rig: Rig, figures: Figures) -> None:
    platform = rig.platform(seed={"traders": 1})
    engine = rig.engine(platform)
    server = rig.web(platform, workers=1, threads=2)
    engine.stop()
    client = HttpClient(server.port, platform.seed["traders"][0]["token"], timeout=30)
    try:
        body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}
        answer = client.request("POST", "/api/orders", body)
        figures["down_answer_s"] = round(answer.seconds, 3)
        assert answer.status == 503, answer
        assert answer.envelope_code == "service_unavailable"
        assert answer.seconds < 2.0, "waited for an engine that is not there"
        health = client.request("GET", "/healthz")
        assert health.body["engines"] == {"main": "down"}, health.body
        engine.start()
        again = wait_until(
            lambda: (a := client.request("POST", "/api/orders", {**body, "client_order_id": "after"})).ok and a,
            what="an order accepted once the engine is back",
            timeout=30,
        )
        assert again.status == 201
        health = client.request("GET", "/healthz")
        assert health.body["engines"]["main"]["status"] == "ok", health.body
    finally:
        client.close()
    figures.passed()


def test_an_order_answered_503_by_a_stopped_engine_is_not_placed_once_it_resumes(rig: Rig, figures: Figures) -> None:
    platform = rig.platform(seed={"traders": 1})
    engine = rig.engine(platform)
    server = rig.web(platform, workers=1, threads=2)
    client = HttpClient(server.port, platform.seed["traders"][0]["token"], timeout=30)
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}
    try:
        assert client.request("POST", "/api/orders", {**body, "client_order_id": "before"}).status == 201
        (orders_before,) = platform.query("SELECT count(*) FROM orders_order")[0]
        os.kill(engine.pid, signal.SIGSTOP)
        try:
            stalled = client.request("POST", "/api/orders", body)  # no client_order_id: a retry places anew
        finally:
            os.kill(engine.pid, signal.SIGCONT)
        figures["stalled_answer_s"] = round(stalled.seconds, 3)
        assert (stalled.status, stalled.envelope_code) == (503, "service_unavailable"), stalled
        assert stalled.seconds >= 1.9, "answered before the web worker's wait (2 s) was over"
        after = wait_until(
            lambda: (a := client.request("POST", "/api/orders", {**body, "client_order_id": "after"})).ok and a,
            what="an order accepted once the engine resumed",
            timeout=30,
        )
        assert after.status == 201
        (orders_after,) = platform.query("SELECT count(*) FROM orders_order")[0]
        assert orders_after == orders_before + 1, "the order answered 503 was placed once the engine resumed"
        assert b"1 commands not applied, their senders' wait over" in engine.log_path.read_bytes()
    finally:
        client.close()
    figures.passed()


@pytest.mark.timeout(300)
def test_a_standby_takes_over_from_a_leader_frozen_under_load(rig: Rig, figures: Figures) -> None:
    # A frozen leader keeps its database sessions and its lock, and its kernel keeps the web
    # workers' connections open: nothing tells the standby or the web workers it is gone but
    # its silence (orders.sequencer.leadership, orders.sequencer.zmq.shard_socket).
    # Its watchdog would end it as it thaws (its timer ran out meanwhile; the next test): a
    # long one here, for the thawed engine to find itself fenced and stand by.
    platform, (frozen, standby), server, stop, traders = _two_engines_under_load(rig, ENGINE_WATCHDOG_SECONDS="60")

    def placed() -> int:
        return sum(len(t.placements) for t in traders)

    try:
        wait_until(lambda: placed() >= 100, what="orders flowing", timeout=60)
        os.kill(frozen.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            wait_until(standby.leading, what="the standby to take over from the frozen leader", timeout=15)
            led_at = time.monotonic()
            answered = wait_until(
                lambda: min(
                    (
                        a.at
                        for t in traders
                        for a in t.attempts
                        if a.op.startswith("place") and a.at - a.seconds > frozen_at and 200 <= a.status < 300
                    ),
                    default=None,
                ),
                what="an order answered by the standby",
                timeout=15,
            )
            figures["frozen_failover_s"] = round(answered - frozen_at, 3)
            log(f"failover from a frozen leader: {answered - frozen_at:.2f} s")
            # With the leader still frozen (6 s more), every order reaches the standby: 150
            # more at least, each well within its trader's patience.
            before = placed()
            wait_until(
                lambda: placed() >= before + 150 and time.monotonic() > led_at + 6,
                what="orders flowing past the frozen leader",
                timeout=60,
            )
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
            thawed_at = time.monotonic()
        # Once the web workers' heartbeats dropped the frozen engine's connections (1.5 s),
        # no command went its way: none sent since then answered 503 (sent there, each
        # waited out its 2 s for nothing).
        sent_past_it = [
            a
            for t in traders
            for a in t.attempts
            if led_at + 2.0 < a.at - a.seconds and a.at < thawed_at and a.op.startswith("place")
        ]
        assert sent_past_it, "no order sent while the leader was frozen"
        assert not [a for a in sent_past_it if a.status == 503], "orders still sent to the frozen engine"
        wait_until(
            lambda: b"lost leadership; standing by" in frozen.log_path.read_bytes(),
            what="the thawed engine to stand by",
            timeout=15,
        )
        before = placed()
        wait_until(lambda: placed() >= before + 100, what="orders flowing once it thawed", timeout=60)
    finally:
        stop.set()
    assert b"the leader stopped serving; ending its sessions" in standby.log_path.read_bytes()
    assert figures["frozen_failover_s"] <= 5.0, f"failover took {figures['frozen_failover_s']} s"
    _traffic_checked(platform, server.port, traders, figures)


def test_an_engine_whose_loop_hangs_is_ended_by_its_watchdog(rig: Rig, figures: Figures) -> None:
    # A lock nobody releases (an operator's transaction left open on a trader's wallets):
    # the batch waits, the loop no longer comes round, the watchdog ends the process for its
    # supervisor to restart, the tracebacks saying where it hung.
    platform = rig.platform(seed={"traders": 1}, ENGINE_WATCHDOG_SECONDS="2")
    engine = rig.engine(platform)
    server = rig.web(platform, workers=1, threads=2)
    trader = platform.seed["traders"][0]
    client = HttpClient(server.port, trader["token"], timeout=30)
    body = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}
    operator = platform.connect()
    try:
        assert client.request("POST", "/api/orders", {**body, "client_order_id": "before"}).status == 201
        (user_id,) = platform.query("SELECT user_id FROM orders_order WHERE client_order_id = 'before'")[0]
        operator.execute("BEGIN")
        operator.execute("SELECT id FROM orders_wallet WHERE user_id = %s FOR UPDATE", [user_id])
        hung_at = time.monotonic()
        answer = client.request("POST", "/api/orders", {**body, "client_order_id": "hung"})
        assert (answer.status, answer.envelope_code) == (503, "service_unavailable"), answer
        assert engine.process is not None
        status = engine.process.wait(timeout=30)
        figures["watchdog_exit_s"] = round(time.monotonic() - hung_at, 3)
        assert status == 1, status
        dump = engine.log_path.read_bytes()
        assert b"Timeout (0:00:02)!" in dump and b"most recent call first" in dump, dump[-2000:]
    finally:
        operator.execute("ROLLBACK")
        operator.close()
        client.close()
    engine.process = None
    engine.start()  # what its supervisor does: the books from the database, the lock released
    again = HttpClient(server.port, trader["token"], timeout=30)
    try:
        answer = wait_until(
            lambda: (a := again.request("POST", "/api/orders", {**body, "client_order_id": "after"})).ok and a,
            what="orders once the engine restarted",
            timeout=30,
        )
        assert answer.status == 201
    finally:
        again.close()
    figures.passed()


@pytest.mark.timeout(300)
def test_an_engine_that_lost_its_lock_commits_nothing_once_the_standby_leads(rig: Rig, figures: Figures) -> None:
    # The session holding the shard's lock ends (pg_terminate_backend here: a network cut, a
    # pooler, an operator would do the same) while its engine runs on: PostgreSQL releases the
    # lock at once and the standby leads within 0.1 s, when the old leader only notices at
    # its next check. Until then both receive commands (each web worker is connected to both
    # endpoints): the old one must not commit a batch against books the new one has changed.
    platform, _, server, stop, traders = _two_engines_under_load(rig)
    rounds = 3
    try:
        for round_ in range(rounds):
            wait_until(
                lambda: sum(len(t.placements) for t in traders) >= 150 * (round_ + 1),  # noqa: B023  (called at once)
                what="orders flowing before the lock's session ends",
                timeout=60,
            )
            leader = engine_leader_pid(platform)
            assert leader is not None, "no engine holds the shard's lock"
            platform.query("SELECT pg_terminate_backend(%s)", [leader])
            log(f"the leader's lock session ({leader}) terminated ({round_ + 1})")
            wait_until(
                lambda: engine_leader_pid(platform) not in (None, leader),  # noqa: B023  (called at once)
                what="the other engine to take the lock",
                timeout=10,
            )
        wait_until(
            lambda: sum(len(t.placements) for t in traders) >= 150 * (rounds + 1),
            what="orders flowing after the last takeover",
            timeout=60,
        )
    finally:
        stop.set()
    _traffic_checked(platform, server.port, traders, figures, takeovers=rounds)
