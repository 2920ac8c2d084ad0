"""3. Holder-share delivery through the Django delivery service (`revenue_events_deliver`,
what the Celery task runs), to anvil, in its own process: its peak RSS is the
delivering worker's.

`python -m bench.delivery_service CONFIG.json RESULT.json` with the benchmark's Django
environment. Pending revenue events are inserted in SQL, then delivery cycles run back
to back until every event is `delivered` (CHAIN_CONFIRMATIONS deep; when a cycle has
nothing left to send, one block is mined so the last batches confirm, as the next block
of a live chain would). First one transaction per event (DELIVERY_BATCH_SIZE=1), then
batches of DELIVERY_BATCH_SIZE; a warm-up batch touching every stream comes first."""

from __future__ import annotations

import cProfile
import json
import os
import sys
import time
from typing import Any

from bench.infra import vm_hwm_mb

FUNDING_WEI = 10**24


def _drain(source_type: str, *, node: Any, timeout: float) -> tuple[float, int]:
    """Delivery cycles until every event of `source_type` is delivered; (seconds, cycles)."""
    from django.conf import settings

    from revenue.delivery.metadata import DeliveryStatus, status_in
    from revenue.delivery.service import revenue_events_deliver
    from revenue.models import RevenueEvent

    undelivered = RevenueEvent.objects.filter(source_type=source_type).exclude(status_in(DeliveryStatus.DELIVERED))
    began = time.perf_counter()
    cycles = 0
    while True:
        result = revenue_events_deliver(max_batches=settings.DELIVERY_MAX_BATCHES_PER_RUN)
        cycles += 1
        if result.error:
            raise RuntimeError(f"delivery cycle failed: {result.error}")
        if not undelivered.exists():
            return time.perf_counter() - began, cycles
        if result.counters.batches_sent == 0:
            node.mine(1)  # only confirmations are missing
        if time.perf_counter() - began > timeout:
            raise RuntimeError(f"{undelivered.count()} events of {source_type} still undelivered after {timeout} s")


def _gas_used(w3: Any, deployment_id: int, sizes: set[int]) -> dict[int, list[int]]:
    from revenue.models import DeliveryBatch

    used: dict[int, list[int]] = {size: [] for size in sizes}
    for size, tx_hash in DeliveryBatch.objects.filter(deployment_id=deployment_id, size__in=sizes).values_list(
        "size", "mined_tx_hash"
    ):
        if tx_hash:
            used[size].append(int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"]))
    return used


def run(config: dict[str, Any]) -> dict[str, Any]:
    from revenue.chain.client import connect, dev_signer_fund
    from revenue.chain.devnode import AnvilNode

    with AnvilNode() as node:
        w3 = connect(provider_uri=node.uri, timeout=60)
        signer = dev_signer_fund(w3, amount_wei=FUNDING_WEI)
        os.environ["WEB3_PROVIDER_URI"] = node.uri
        os.environ["CHAIN_SIGNER_PRIVATE_KEY"] = "0x" + bytes(signer.key).hex()
        os.environ["LOG_LEVEL"] = "WARNING"
        import django

        django.setup()
        from django.conf import settings

        from bench.seed import seed_pending_revenue_events
        from revenue.chain.runtime import chain_context_reset, chain_deploy

        deployment = chain_deploy(w3=w3, signer=signer)
        chain_context_reset()
        batch_size = int(settings.DELIVERY_BATCH_SIZE)
        timeout = float(config.get("timeout_s", 600))

        seed_pending_revenue_events(source_type="bench-delivery-warmup", count=10)
        _drain("bench-delivery-warmup", node=node, timeout=timeout)

        settings.DELIVERY_BATCH_SIZE = 1
        seed_pending_revenue_events(source_type="bench-delivery-single", count=config["single_events"])
        single_s, _ = _drain("bench-delivery-single", node=node, timeout=timeout)

        settings.DELIVERY_BATCH_SIZE = batch_size
        seed_pending_revenue_events(source_type="bench-delivery-batched", count=config["batched_events"])
        profile_path = os.environ.get("BENCH_CPROFILE")  # e.g. var/bench/delivery.pstats
        profiler = cProfile.Profile() if profile_path else None
        if profiler is not None:
            profiler.enable()
        batched_s, cycles = _drain("bench-delivery-batched", node=node, timeout=timeout)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)

        gas = _gas_used(w3, deployment.pk, {1, batch_size})
    single_rate = config["single_events"] / single_s
    batched_rate = config["batched_events"] / batched_s
    full_batches = gas[batch_size]
    gas_single = sorted(gas[1])[len(gas[1]) // 2] if gas[1] else 0
    gas_per_event = sum(full_batches) / (len(full_batches) * batch_size) if full_batches else 0.0
    return {
        "service_events_per_s": batched_rate,
        "service_single_events_per_s": single_rate,
        "service_speedup": batched_rate / single_rate,
        "service_batch_size": batch_size,
        "service_batched_events": config["batched_events"],
        "service_single_events": config["single_events"],
        "service_cycles": cycles,
        "service_gas_single_tx": gas_single,
        "service_gas_per_event_batched": gas_per_event,
        "service_gas_per_event_ratio": gas_per_event / gas_single if gas_single else 0.0,
        "service_rss_mb": vm_hwm_mb(os.getpid()),
    }


def main(argv: list[str]) -> int:
    with open(argv[1]) as handle:
        config = json.load(handle)
    result = run(config)
    with open(argv[2], "w") as handle:
        json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
