"""Worker crash: a real Celery worker delivers pending revenue events to the HolderReserve
contract on anvil and is SIGKILLed twice mid-delivery (batches confirmed, one in flight,
events still pending). It is restarted and the periodic re-drive (the task beat runs) is
published until everything is delivered. The chain's logs must show every event paid
exactly once, with its amount; every event's metadata says delivered, by that transaction."""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from tests.reliability.harness import Figures, Platform, Rig, block_producer, log
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

EVENTS = 600
BATCH = 20  # events per transaction: 30 batches, so a kill lands between and inside batches
KILL_AT = (0.2, 0.55)  # share of events confirmed or in flight when the worker is SIGKILLed
REDRIVE_EVERY_S = 2.0  # beat's re-drive period for this run (DELIVERY_POLL_INTERVAL_SECONDS is 60)
DELIVERY_TIMEOUT_S = 150.0


def delivery_states(platform: Platform) -> dict[str, int]:
    from revenue.delivery.metadata import Key

    return dict(
        platform.query("SELECT metadata->>%s, count(*) FROM revenue_revenueevent GROUP BY 1", [Key.STATUS.value])
    )


def batch_states(platform: Platform) -> dict[str, int]:
    return dict(platform.query("SELECT status, count(*) FROM revenue_deliverybatch GROUP BY 1"))


@pytest.mark.timeout(360)
def test_worker_killed_mid_delivery_delivers_every_event_once_on_chain(rig: Rig, figures: Figures) -> None:
    broker = rig.redis()
    node = rig.anvil()
    platform = rig.platform(
        redis_url=broker.url,
        seed={"traders": 1, "revenue_events": EVENTS},
        DELIVERY_ENABLED="1",
        WEB3_PROVIDER_URI=node.uri,
        CHAIN_SIGNER_KEY_FILE=str(rig.workdir / "chain-signer.key"),
        CHAIN_CONFIRMATIONS="2",
        DELIVERY_BATCH_SIZE=str(BATCH),
        DELIVERY_MAX_BATCHES_PER_RUN="1000",  # one run would deliver everything: only the kills stop it
        DELIVERY_DEBOUNCE_SECONDS="1",
    )
    platform.run("manage.py", "chain_deploy", "--dev", timeout=120)
    ((address,),) = platform.query("SELECT contract_address FROM revenue_chaindeployment WHERE active")
    worker = rig.worker(platform, queues="celery,chain")
    publisher = rig.publisher(platform)

    kills: list[dict[str, Any]] = []
    redrives = 0
    began = time.monotonic()
    with block_producer(node.uri, every=0.5):  # a live chain: confirmations accrue between transactions
        publisher.send("revenue.tasks.revenue_delivery_run", queue="chain")  # what new events publish
        redriven_at = time.monotonic()

        def redrive_due() -> None:
            """After a kill, until the new worker moves delivery on: a re-drive every
            REDRIVE_EVERY_S (beat's role), while the state is read far more often, so that
            the next kill lands where it is meant to and not once everything was sent."""
            nonlocal redrives, redriven_at
            if kills and time.monotonic() - redriven_at >= REDRIVE_EVERY_S:
                publisher.send("revenue.tasks.revenue_delivery_redrive", queue="chain")
                redrives += 1
                redriven_at = time.monotonic()

        for share in KILL_AT:

            def mid_delivery(share: float = share) -> bool:
                redrive_due()
                states = delivery_states(platform)
                moving = states.get("delivered", 0) + states.get("submitted", 0)
                return moving >= share * EVENTS and states.get("submitted", 0) > 0

            wait_until(mid_delivery, timeout=DELIVERY_TIMEOUT_S, interval=0.02, what=f"{share:.0%} of events moving")
            worker.kill()
            kills.append({"events": delivery_states(platform), "batches": batch_states(platform)})
            log(f"worker SIGKILLed at {kills[-1]}")
            worker.start()
            redriven_at = time.monotonic() - REDRIVE_EVERY_S  # the first re-drive at once

        def redriven() -> bool:
            redrive_due()
            return bool(delivery_states(platform).get("delivered", 0) > kills[-1]["events"].get("delivered", 0))

        # Until the new worker moves delivery on after the last kill (the earlier kills: the
        # next kill's share, above every share moving at the previous one, says it did).
        wait_until(redriven, timeout=60, interval=0.05, what="delivery to resume after the restart")

        def all_delivered() -> bool:
            nonlocal redrives
            if delivery_states(platform) == {"delivered": EVENTS}:
                return True
            publisher.send("revenue.tasks.revenue_delivery_redrive", queue="chain")
            redrives += 1
            return False

        wait_until(all_delivered, timeout=DELIVERY_TIMEOUT_S, interval=REDRIVE_EVERY_S, what="every event delivered")
    delivery_s = time.monotonic() - began

    for kill in kills:  # each kill interrupted a delivery in progress
        assert kill["events"].get("pending", 0) > 0 and kill["events"].get("submitted", 0) > 0, kill

    # The chain: each event once, with its exact amount.
    from revenue.chain.client import chain_items_paid, connect, delivered_logs, reserve_contract
    from revenue.chain.units import usd_to_wei
    from revenue.delivery.metadata import DeliveryMetadata, DeliveryStatus

    w3 = connect(provider_uri=node.uri)
    logs = delivered_logs(w3, address, 0, "latest")
    total_received = int(reserve_contract(w3, address).functions.total_received().call())
    ((price,),) = platform.query("SELECT reference_price FROM orders_market WHERE symbol = 'ETH-USDT'")
    events = {
        pk: (Decimal(share), metadata)
        for pk, share, metadata in platform.query("SELECT id, holder_share, metadata FROM revenue_revenueevent")
    }
    wanted = {pk: usd_to_wei(share, eth_usd_price=Decimal(price)) for pk, (share, _) in events.items()}
    ids = [entry.item_id for entry in logs]
    paid_twice = [pk for pk, n in Counter(ids).items() if n > 1]
    assert not paid_twice, f"events paid twice on-chain: {paid_twice[:10]}"
    assert sorted(ids) == sorted(events)
    assert {entry.item_id: entry.amount for entry in logs} == wanted
    assert chain_items_paid(w3, address) == EVENTS
    assert total_received == sum(wanted.values())
    by_event = {entry.item_id: entry for entry in logs}
    for pk, (_, document) in events.items():
        entry, metadata = by_event[pk], DeliveryMetadata.of(document)
        assert metadata.status == DeliveryStatus.DELIVERED, (pk, document)
        assert metadata.tx_hash == entry.tx_hash and metadata.block_hash == entry.block_hash, (pk, document)
        assert metadata.amount_wei == entry.amount and metadata.block_number == entry.block_number
        assert metadata.delivered_at and isinstance(metadata.nonce, int)
    # The books: what was distributed is exactly the holder shares; nothing left in flight.
    ((distributed, holder),) = platform.query(
        "SELECT (SELECT sum(distributed) FROM revenue_revenuestream), (SELECT sum(holder_share) FROM "
        "revenue_revenueevent)"
    )
    assert distributed == holder
    batches = batch_states(platform)
    assert batches.get("submitted", 0) == 0, batches
    ((covered,),) = platform.query(
        "SELECT count(DISTINCT e) FROM revenue_deliverybatch b, jsonb_array_elements(b.event_ids) e "
        "WHERE b.status = 'confirmed'"
    )
    assert covered == EVENTS  # confirmed batches carry every event, none twice (checked on-chain above)

    figures.update(
        events=EVENTS,
        batch_size=BATCH,
        faults_injected={"worker_sigkills": len(kills)},
        kills=kills,
        worker_starts=worker.starts,
        redrive_tasks_published=redrives,
        batches=batches,
        transactions=len({entry.tx_hash for entry in logs}),
        onchain_events_checked=len(logs),
        total_received_wei=str(total_received),
        holder_share_total=str(holder),
        delivery_s=round(delivery_s, 1),
    )
    figures.passed()
