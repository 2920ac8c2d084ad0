"""Node outage: a real Celery worker delivers pending revenue events to the HolderReserve
contract on anvil; the node (a real process) goes down for half a minute of wall time while the
beat's re-drive keeps coming, then comes back with its chain (--state). Meanwhile delivery
must be paused with its cause (worker state, failure report), alerted when it started and
again on its schedule, and no event may use an attempt or fail; afterwards it resumes by
itself, and the contract's logs show every event paid exactly once."""

from __future__ import annotations

import json
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from tests.reliability.harness import Figures, Platform, Rig, block_producer, log
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

EVENTS = 300
BATCH = 50
OUTAGE_S = 30.0  # well past the re-drive (2 s) and three alert repeats; CI time counts
REDRIVE_EVERY_S = 2.0
ALERT_REPEAT_S = 10
DELIVERY_TIMEOUT_S = 150.0
REPORT = (
    "import json; from revenue.reports import onchain_failure_report; "
    "print(json.dumps(onchain_failure_report(hours=24).summary, default=str))"
)


def states(platform: Platform) -> dict[str, int]:
    from revenue.delivery.metadata import Key

    return dict(
        platform.query("SELECT metadata->>%s, count(*) FROM revenue_revenueevent GROUP BY 1", [Key.STATUS.value])
    )


def most_attempts(platform: Platform) -> int:
    from revenue.delivery.metadata import Key

    ((value,),) = platform.query(
        "SELECT coalesce(max((metadata->>%s)::int), 0) FROM revenue_revenueevent", [Key.RETRY_ATTEMPTS.value]
    )
    return int(value)


def pause_state(platform: Platform) -> tuple[str, Any, Any]:
    rows = platform.query("SELECT pause_cause, pause_alerted_at, resumed_at FROM revenue_deliveryheartbeat")
    return rows[0] if rows else ("", None, None)


def alerts_logged(worker_log: str, subject: str) -> int:
    return sum(1 for line in worker_log.splitlines() if f"delivery alert: {subject}" in line)


@pytest.mark.timeout(420)
def test_node_down_for_half_a_minute_pauses_delivery_then_it_resumes(rig: Rig, figures: Figures) -> None:
    broker = rig.redis()
    node = rig.anvil(state_path=rig.workdir / "anvil-state.json")
    platform = rig.platform(
        redis_url=broker.url,
        seed={"traders": 1, "revenue_events": EVENTS},
        DELIVERY_ENABLED="1",
        WEB3_PROVIDER_URI=node.uri,
        CHAIN_SIGNER_KEY_FILE=str(rig.workdir / "chain-signer.key"),
        CHAIN_CONFIRMATIONS="2",
        CHAIN_RPC_TIMEOUT_SECONDS="1",
        DELIVERY_BATCH_SIZE=str(BATCH),
        DELIVERY_MAX_BATCHES_PER_RUN="1",  # a batch per task: the outage lands mid-delivery
        DELIVERY_DEBOUNCE_SECONDS="1",
        DELIVERY_ALERT_REPEAT_SECONDS=str(ALERT_REPEAT_S),
    )
    platform.run("manage.py", "chain_deploy", "--dev", timeout=120)
    ((address,),) = platform.query("SELECT contract_address FROM revenue_chaindeployment WHERE active")
    worker = rig.worker(platform, queues="celery,chain")
    publisher = rig.publisher(platform)
    redrives = 0

    def redrive() -> None:
        nonlocal redrives
        publisher.send("revenue.tasks.revenue_delivery_redrive", queue="chain")
        redrives += 1

    with block_producer(node.uri, every=0.5):
        publisher.send("revenue.tasks.revenue_delivery_run", queue="chain")

        def some_delivered() -> bool:
            redrive()
            return states(platform).get("delivered", 0) >= BATCH

        wait_until(some_delivered, timeout=DELIVERY_TIMEOUT_S, interval=REDRIVE_EVERY_S, what="a first batch delivered")
        before = states(platform)
        node.stop()  # SIGTERM: anvil writes its chain to --state on the way out
        down_at = time.monotonic()
        log(f"node stopped at {before}")

        seen: list[dict[str, Any]] = []

        def outage_over() -> bool:
            redrive()
            cause, alerted_at, _ = pause_state(platform)
            seen.append({"cause": cause, "alerted_at": alerted_at, "states": states(platform)})
            return time.monotonic() - down_at >= OUTAGE_S

        wait_until(outage_over, timeout=OUTAGE_S + 30, interval=REDRIVE_EVERY_S, what="the outage")
        outage_s = time.monotonic() - down_at
        report = json.loads(
            platform.run("manage.py", "shell", "-c", REPORT, timeout=60).stdout.strip().splitlines()[-1]
        )
        worker_log = worker.log_path.read_text(errors="replace")
        paused_alerts = alerts_logged(worker_log, "On-chain delivery paused: node_unreachable")

        node.start()  # same port, the chain it had
        log(f"node back after {outage_s:.0f} s")

        def all_delivered() -> bool:
            redrive()
            return states(platform) == {"delivered": EVENTS}

        wait_until(all_delivered, timeout=DELIVERY_TIMEOUT_S, interval=REDRIVE_EVERY_S, what="every event delivered")
        resumed = pause_state(platform)

    # While the node was down: paused with its cause, nothing failed, no attempt used.
    causes = {sample["cause"] for sample in seen}
    assert "node_unreachable" in causes and causes <= {"", "node_unreachable"}, causes
    assert seen[-1]["cause"] == "node_unreachable"
    for sample in seen:
        assert not sample["states"].get("failed") and not sample["states"].get("critical"), sample
    assert report["delivery_paused"] is True and report["pause"]["cause"] == "node_unreachable"
    assert report["total_failures"] == 0 and report["critical_failures"] == 0
    # alerted when it started, then every ALERT_REPEAT_S while it lasted (not every cycle)
    assert int(OUTAGE_S // ALERT_REPEAT_S) <= paused_alerts <= int(OUTAGE_S // ALERT_REPEAT_S) + 1, paused_alerts
    assert most_attempts(platform) == 0
    # Afterwards: resumed by itself, alerted once.
    assert resumed[0] == "" and resumed[2] is not None
    final_log = worker.log_path.read_text(errors="replace")
    assert alerts_logged(final_log, "On-chain delivery resumed (node_unreachable is gone)") == 1

    # The chain: each event paid once, with its exact amount; the books agree.
    from revenue.chain.client import chain_items_paid, connect, delivered_logs, reserve_contract
    from revenue.chain.units import usd_to_wei
    from revenue.delivery.metadata import DeliveryMetadata, DeliveryStatus

    w3 = connect(provider_uri=node.uri)
    logs = delivered_logs(w3, address, 0, "latest")
    ((price,),) = platform.query("SELECT reference_price FROM orders_market WHERE symbol = 'ETH-USDT'")
    events = {
        pk: (Decimal(share), document)
        for pk, share, document in platform.query("SELECT id, holder_share, metadata FROM revenue_revenueevent")
    }
    wanted = {pk: usd_to_wei(share, eth_usd_price=Decimal(price)) for pk, (share, _) in events.items()}
    paid_twice = [pk for pk, n in Counter(entry.item_id for entry in logs).items() if n > 1]
    assert not paid_twice, f"events paid twice on-chain: {paid_twice[:10]}"
    assert {entry.item_id: entry.amount for entry in logs} == wanted
    assert chain_items_paid(w3, address) == EVENTS
    assert int(reserve_contract(w3, address).functions.total_received().call()) == sum(wanted.values())
    by_event = {entry.item_id: entry for entry in logs}
    for pk, (_, document) in events.items():
        metadata = DeliveryMetadata.of(document)
        assert metadata.status == DeliveryStatus.DELIVERED and metadata.retry_attempts == 0, (pk, document)
        assert metadata.tx_hash == by_event[pk].tx_hash and metadata.block_hash == by_event[pk].block_hash

    figures.update(
        events=EVENTS,
        batch_size=BATCH,
        faults_injected={"node_stopped_s": round(outage_s, 1)},
        events_at_stop=before,
        pause_causes_seen=sorted(causes),
        paused_alerts=paused_alerts,
        redrive_tasks_published=redrives,
        transactions=len({entry.tx_hash for entry in logs}),
        onchain_events_checked=len(logs),
        report_during_outage={k: report[k] for k in ("delivery_paused", "total_failures", "events_waiting")},
    )
    figures.passed()
