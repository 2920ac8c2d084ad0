"""Database restart under load: gunicorn (production settings) runs on a private
PostgreSQL cluster (never the shared system server), traders keep placing and cancelling
orders while the cluster is stopped (fast shutdown: sessions terminated mid-transaction)
and started again. Clients get clean, quick 503 envelopes during the outage; every order
is applied completely or not at all; the same server processes serve again afterwards."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from tests.reliability.harness import (
    Figures,
    HttpClient,
    RetryPolicy,
    Rig,
    Trader,
    assert_platform_sound,
    log,
    traders_join,
    traffic_figures,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

TRADERS = 6
BEFORE_S, DOWN_S, AFTER_S = 6.0, 3.0, 10.0
HTTP_TIMEOUT_S = 10.0  # no request may take longer, outage or not
RECOVERY_GRACE_S = 2.0  # after the cluster is back, every answer must be a success


class HealthProbe(threading.Thread):
    """GET /healthz every 250 ms: what a load balancer would see."""

    def __init__(self, port: int) -> None:
        super().__init__(name="healthz", daemon=True)
        self.client = HttpClient(port, "-", timeout=HTTP_TIMEOUT_S)
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, int, Any]] = []

    def run(self) -> None:
        while not self.stop_event.wait(0.25):
            answer = self.client.request("GET", "/healthz")
            self.samples.append((answer.at, answer.status, answer.body))
        self.client.close()


@pytest.mark.timeout(300)
def test_database_restart_under_load_is_clean_and_atomic(rig: Rig, figures: Figures) -> None:
    cluster = rig.cluster()
    platform = rig.platform(server=cluster.server, seed={"traders": TRADERS})
    server = rig.web(platform, workers=2, threads=4)
    assert server.process is not None
    processes_before = (server.process.pid, sorted(server.worker_pids()))

    stop = threading.Event()
    began = time.monotonic()
    traders = [
        Trader(
            i,
            port=server.port,
            token=platform.seed["traders"][i]["token"],
            seed=5,
            placements=None,
            stop=stop,
            deadline=began + 120,
            timeout=HTTP_TIMEOUT_S,
            # A 503 is retried with the same client_order_id: it can never place twice.
            retry=RetryPolicy(statuses=frozenset({503}), transport=True, patience=60, pause=0.25),
            pause=0.02,
        )
        for i in range(TRADERS)
    ]
    probe = HealthProbe(server.port)
    for thread in [*traders, probe]:
        thread.start()

    def placed_after(moment: float) -> list[int]:
        return [
            sum(1 for p in list(t.placements) if p.answer and p.answer.ok and p.answer.at > moment) for t in traders
        ]

    def unavailable_after(moment: float) -> int:
        return sum(1 for t in traders for a in list(t.attempts) if a.status == 503 and a.at > moment)

    try:
        # Each phase lasts at least its time and until what it is there for has happened,
        # however slow the machine: every trader placed, a request saw the outage, every
        # trader placed again once the database was back.
        time.sleep(BEFORE_S)
        wait_until(lambda: min(placed_after(began)) > 0, timeout=60, what="every trader to place an order")
        down_at = time.monotonic()
        cluster.stop("fast")  # terminates every session, open transactions included
        log(f"database stopped; down for at least {DOWN_S:g} s under load")
        time.sleep(DOWN_S)
        wait_until(lambda: unavailable_after(down_at) > 0, timeout=30, what="a request to see the outage")
        cluster.start()
        up_at = time.monotonic()
        log("database back")
        time.sleep(AFTER_S)
        wait_until(
            lambda: min(placed_after(up_at + 1)) > 0,
            timeout=60,
            what="every trader to place an order after the database came back",
        )
    finally:
        stop.set()
        probe.stop_event.set()
        traders_join(traders, timeout=90)
        probe.join(30)

    attempts = [a for t in traders for a in t.attempts]
    placements = [p for t in traders for p in t.placements]
    unavailable = [a for a in attempts if a.status == 503]
    figures.update(
        traffic_figures(traders),
        traders=TRADERS,
        load_s=round(time.monotonic() - began, 1),
        outage_s=round(up_at - down_at, 1),
        faults_injected={"database_fast_stops": 1, "database_starts": 1},
        answers_503=len(unavailable),
        answers_503_in_flight_at_stop=sum(1 for a in unavailable if a.at - a.seconds < down_at),
        max_latency_during_outage_s=round(max((a.seconds for a in attempts if down_at <= a.at <= up_at), default=0), 3),
        healthz=dict(Counter(str(status) for _, status, _ in probe.samples)),
    )

    # Clean errors during the outage: the contract's JSON envelope with 503, fast, no 500, no HTML.
    assert unavailable, "no request saw the outage"
    unclean = [a for a in attempts if not (200 <= a.status < 300 or a.status in (409, 503))]
    assert not unclean, f"unclean answers: {unclean[:5]}"
    assert all(a.json for a in attempts), "an answer was not JSON"
    assert all(a.code == "service_unavailable" for a in unavailable), Counter(a.code for a in unavailable)
    assert all(a.code == "order_not_cancellable" for a in attempts if a.status == 409)
    assert all(a.seconds < HTTP_TIMEOUT_S for a in attempts)
    # Recovery without manual steps: the same processes, and only successes once it is back.
    assert (server.process.pid, sorted(server.worker_pids())) == processes_before
    late_failures = [a for a in attempts if a.at - a.seconds > up_at + RECOVERY_GRACE_S and a.status == 503]
    assert not late_failures, f"503 after the database was back: {late_failures[:5]}"
    assert all(p.acknowledged for p in placements), "a placement was never acknowledged"
    recovered = placed_after(up_at + 1)
    figures["placements_after_recovery_by_trader"] = recovered
    assert min(recovered) > 0, "a trader placed nothing after the database came back"
    during = [(status, body) for at, status, body in probe.samples if down_at + 0.5 < at < up_at - 0.5]
    assert during and all(status == 503 and body.get("database") == "down" for status, body in during), during
    assert probe.samples[-1][1] == 200

    # Atomic orders: every acknowledged placement is one row, as answered; nothing else exists.
    answered = {(p.client_order_id, int(p.answer.body["id"])) for p in placements if p.answer}
    stored = set(platform.query("SELECT client_order_id, id FROM orders_order"))
    assert stored == answered
    retried = [p for p in placements if any(a.status == 503 for a in p.attempts)]
    figures.update(
        placements_retried=len(retried),
        # 503, then 200: the first attempt had committed before its answer was lost; the retry
        # with the same client_order_id found it (never a second order).
        retried_found_committed=sum(1 for p in retried if p.answer and p.answer.status == 200),
        retried_then_created=sum(1 for p in retried if p.answer and p.answer.status == 201),
    )
    assert_platform_sound(figures, platform, port=server.port, staff_token=platform.seed["staff_token"])
    figures.passed()
