"""Helpers shared by the delivery tests (tests/revenue/test_delivery_*.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from django.db import connections
from django.db.models import F, Sum
from django.utils import timezone

from revenue.chain.client import delivered_logs, reserve_contract, usd_to_wei
from revenue.chain.runtime import ChainContext, chain_context_get
from revenue.delivery import DeliveryCycleResult, revenue_events_deliver
from revenue.models import RevenueEvent, RevenueStream
from revenue.split import revenue_split
from revenue.streams import STREAMS

ETH_PRICE = Decimal("2000.00")  # the eth_market fixture's reference price


def events_create(count: int, *, gross: str | Decimal = "1.00", streams: int = 10, prefix: str = "t") -> list[int]:
    """``count`` pending revenue events with varied amounts, as revenue_event_record makes
    them, in one insert (fast enough for thousands)."""
    streams_ensure()
    now = timezone.now()
    base = Decimal(gross)
    rows = []
    totals: dict[int, Decimal] = {}
    candidates = _amounts(base)
    for i in range(count):
        stream_id = i % streams
        amount = next(candidates)
        split = revenue_split(gross=amount)
        totals[stream_id] = totals.get(stream_id, Decimal(0)) + amount
        rows.append(
            RevenueEvent(
                stream_id=stream_id,
                source_type="test",
                source_id=f"{prefix}-{i}",
                currency="USDT",
                gross_amount=amount,
                net_amount=amount,
                holder_share=split.holder,
                reserve_share=split.reserve,
                description=f"test event {i}",
                metadata={"timestamp": now.isoformat(), "onChainDeliveryStatus": "pending", "retryAttempts": 0},
                created_at=now,
            )
        )
    created = RevenueEvent.objects.bulk_create(rows)
    for stream_id, total in totals.items():
        RevenueStream.objects.filter(pk=stream_id).update(collected=F("collected") + total)
    return sorted(event.pk for event in created)


def streams_ensure() -> None:
    """The migration seeds the streams, but a transactional test's flush removes them."""
    if RevenueStream.objects.count() < len(STREAMS):
        for stream_id, name, description, target in STREAMS:
            RevenueStream.objects.get_or_create(
                id=stream_id, defaults={"name": name, "description": description, "target_monthly": target}
            )


def _amounts(base: Decimal) -> Iterator[Decimal]:
    """Varied 8-decimal amounts. SQLite evaluates the CHECK net = holder + reserve in
    floating point, so amounts whose split does not add up exactly as floats are skipped."""
    k = 0
    while True:
        amount = base + Decimal(k % 97) / 100 + Decimal("0.00000007") * (k % 13)
        split = revenue_split(gross=amount)
        if float(split.holder) + float(split.reserve) == float(amount):
            yield amount
        k += 1


def expected_wei(event_ids: list[int] | None = None) -> dict[int, int]:
    events = RevenueEvent.objects.all() if event_ids is None else RevenueEvent.objects.filter(pk__in=event_ids)
    return {pk: usd_to_wei(share, eth_usd_price=ETH_PRICE) for pk, share in events.values_list("pk", "holder_share")}


def statuses() -> dict[str, int]:
    counts: dict[str, int] = {}
    for metadata in RevenueEvent.objects.values_list("metadata", flat=True):
        status = metadata.get("onChainDeliveryStatus")
        counts[status] = counts.get(status, 0) + 1
    return counts


def all_delivered() -> bool:
    return statuses() == {"delivered": RevenueEvent.objects.count()}


def holder_total() -> Decimal:
    return RevenueEvent.objects.aggregate(total=Sum("holder_share"))["total"] or Decimal(0)


def distributed_total() -> Decimal:
    return RevenueStream.objects.aggregate(total=Sum("distributed"))["total"] or Decimal(0)


def onchain(context: ChainContext) -> tuple[list[Any], int]:
    """The reserve's Delivered logs and total_received."""
    logs = delivered_logs(context.w3, context.contract_address, 0, "latest")
    total = reserve_contract(context.w3, context.contract_address).functions.total_received().call()
    return logs, int(total)


def drive(
    *,
    until: Callable[[], bool],
    mine: Callable[[], None] | None = None,
    max_batches: int = 5,
    cycles: int = 30,
    timeout: float = 120.0,
) -> list[DeliveryCycleResult]:
    """Run delivery cycles (mining a block between them when the chain does not) until
    ``until()`` holds; fails after ``cycles`` cycles or ``timeout`` seconds."""
    results = []
    deadline = time.monotonic() + timeout
    for _ in range(cycles):
        results.append(revenue_events_deliver(max_batches=max_batches))
        if until():
            return results
        if time.monotonic() > deadline:
            break
        if mine is not None:
            mine()
    raise AssertionError(f"not done after {len(results)} cycles: {statuses()}; last result {results[-1].as_dict()}")


def assert_delivered_exactly_once(context: ChainContext | None = None) -> None:
    """Every event delivered once on-chain with the right amount, and the books agree."""
    context = context or chain_context_get()
    logs, total = onchain(context)
    ids = [log.event_id for log in logs]
    assert len(ids) == len(set(ids)), "an event was paid twice"
    wanted = expected_wei()
    assert sorted(ids) == sorted(wanted), "on-chain events differ from the database's"
    assert {log.event_id: log.amount for log in logs} == wanted
    assert total == sum(wanted.values())
    assert distributed_total() == holder_total()
    assert [log.sequence for log in logs] == list(range(len(logs)))
    by_event = {log.event_id: log for log in logs}
    for pk, metadata in RevenueEvent.objects.values_list("pk", "metadata"):
        assert metadata["onChainDeliveryStatus"] == "delivered"
        assert metadata["txHash"] == by_event[pk].tx_hash
        assert metadata["blockNumber"] == by_event[pk].block_number
        assert metadata["sequence"] == by_event[pk].sequence
        assert metadata["amountWei"] == str(by_event[pk].amount)
        assert isinstance(metadata["nonce"], int) and metadata["deliveredAt"]


def in_thread(function: Callable[[], Any]) -> Any:
    """Run ``function`` on its own thread and database connection, so what it writes is
    committed and visible to every other connection (no flush of the test database needed)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed back to the caller
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def committed_event(source_id: str) -> int:
    """A pending event committed outside the test's transaction; delete it with committed_event_delete."""

    def create() -> int:
        return RevenueEvent.objects.create(
            stream_id=0,
            source_type="test-committed",
            source_id=source_id,
            currency="USDT",
            gross_amount=Decimal("1"),
            net_amount=Decimal("1"),
            holder_share=Decimal("0.15"),
            reserve_share=Decimal("0.85"),
            metadata={"onChainDeliveryStatus": "pending", "retryAttempts": 0},
            created_at=timezone.now(),
        ).pk

    return int(in_thread(create))


def committed_event_delete(pk: int) -> None:
    in_thread(lambda: RevenueEvent.objects.filter(pk=pk).delete())
