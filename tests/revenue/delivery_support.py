"""Helpers shared by the delivery tests (tests/revenue/test_delivery_*.py).

Every check of "paid exactly once" reads the reserve's own logs: the `Delivered` logs of
the canonical chain are the payments, whatever the database says."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core import mail
from django.db import connections
from django.db.models import F, Sum
from django.utils import timezone

from revenue.chain.client import PaymentLog, delivered_logs, reserve_contract, usd_to_wei
from revenue.chain.runtime import ChainContext, chain_context_get
from revenue.delivery.metadata import DeliveryMetadata, DeliveryStatus, document_initial
from revenue.delivery.selectors import BUNDLE_ITEM_BASE
from revenue.delivery.service import DeliveryCycleResult, revenue_events_deliver
from revenue.jsonb import JsonMerge
from revenue.models import DeliveryBatch, DeliveryBundle, RevenueEvent, RevenueStream
from revenue.split import revenue_split
from revenue.streams import STREAMS

ETH_PRICE = Decimal("2000.00")  # the eth_market fixture's reference price


def events_create(
    count: int,
    *,
    gross: str | Decimal = "1.00",
    streams: int = 10,
    prefix: str = "t",
    first_stream: int = 0,
    spread: bool = True,
) -> list[int]:
    """``count`` pending revenue events with varied amounts (up to +0.96 above ``gross``,
    or only a few satoshis with ``spread=False``), as revenue_event_record makes them, in
    one insert (fast enough for thousands)."""
    streams_ensure()
    now = timezone.now()
    base = Decimal(gross)
    rows = []
    totals: dict[int, Decimal] = {}
    candidates = _amounts(base, spread=spread)
    for i in range(count):
        stream_id = first_stream + i % streams
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
                metadata=document_initial(timestamp=now.isoformat(), stream_name=str(stream_id), correlation_id="-"),
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


def _amounts(base: Decimal, *, spread: bool) -> Iterator[Decimal]:
    """Varied 8-decimal amounts. SQLite evaluates the CHECK net = holder + reserve in
    floating point, so amounts whose split does not add up exactly as floats are skipped."""
    k = 0
    while True:
        amount = base + (Decimal(k % 97) / 100 if spread else 0) + Decimal("0.00000007") * (k % 13)
        split = revenue_split(gross=amount)
        if float(split.holder) + float(split.reserve) == float(amount):
            yield amount
        k += 1


def expected_wei(event_ids: list[int] | None = None, *, price: Decimal = ETH_PRICE) -> dict[int, int]:
    events = RevenueEvent.objects.all() if event_ids is None else RevenueEvent.objects.filter(pk__in=event_ids)
    return {pk: usd_to_wei(share, eth_usd_price=price) for pk, share in events.values_list("pk", "holder_share")}


def event_patch(pk: int, *patches: dict[str, Any]) -> None:
    """Put an event in a state by the metadata module's own patches (applied in order)."""
    for patch in patches:
        RevenueEvent.objects.filter(pk=pk).update(metadata=JsonMerge("metadata", patch))


def metadata(pk: int) -> DeliveryMetadata:
    return DeliveryMetadata.of(RevenueEvent.objects.get(pk=pk).metadata)


def statuses() -> dict[str, int]:
    counts: Counter[str] = Counter()
    for document in RevenueEvent.objects.values_list("metadata", flat=True):
        status = DeliveryMetadata.of(document).status
        counts[str(status) if status else "?"] += 1
    return dict(counts)


def all_delivered() -> bool:
    return statuses() == {DeliveryStatus.DELIVERED: RevenueEvent.objects.count()}


def holder_total() -> Decimal:
    return RevenueEvent.objects.aggregate(total=Sum("holder_share"))["total"] or Decimal(0)


def distributed_total() -> Decimal:
    return RevenueStream.objects.aggregate(total=Sum("distributed"))["total"] or Decimal(0)


def onchain(context: ChainContext) -> tuple[list[PaymentLog], int]:
    """The reserve's Delivered logs (the canonical chain's payments) and total_received."""
    logs = delivered_logs(context.w3, context.contract_address, 0, "latest")
    total = reserve_contract(context.w3, context.contract_address).functions.total_received().call()
    return logs, int(total)


def payments_by_event(logs: list[PaymentLog]) -> dict[int, list[PaymentLog]]:
    """Which Delivered logs paid each revenue event (a bundle's log pays each of its events)."""
    bundles = dict(DeliveryBundle.objects.values_list("pk", "event_ids"))
    paid: dict[int, list[PaymentLog]] = {}
    for log in logs:
        if log.item_id >= BUNDLE_ITEM_BASE:
            for event_id in bundles[log.item_id - BUNDLE_ITEM_BASE]:
                paid.setdefault(int(event_id), []).append(log)
        else:
            paid.setdefault(log.item_id, []).append(log)
    return paid


def assert_no_unpaid_delivered(context: ChainContext | None = None) -> None:
    """No event is `delivered` unless a Delivered log of the canonical chain paid it, in
    the transaction its metadata names."""
    context = context or chain_context_get()
    paid = payments_by_event(onchain(context)[0])
    for pk, document in RevenueEvent.objects.values_list("pk", "metadata"):
        data = DeliveryMetadata.of(document)
        if data.status == DeliveryStatus.DELIVERED:
            assert pk in paid, f"event {pk} is delivered but the canonical chain never paid it"
            assert data.tx_hash == paid[pk][0].tx_hash, f"event {pk} names {data.tx_hash}, paid by {paid[pk][0]}"


def assert_delivered_exactly_once(context: ChainContext | None = None, *, price: Decimal = ETH_PRICE) -> None:
    """From the reserve's logs: every event paid exactly once, with its amount; no item
    paid twice; the contract's total, the books and every event's metadata agree."""
    context = context or chain_context_get()
    logs, total = onchain(context)
    items = [log.item_id for log in logs]
    assert len(items) == len(set(items)), f"an item was paid twice: {[i for i, n in Counter(items).items() if n > 1]}"
    paid = payments_by_event(logs)
    twice = {pk: found for pk, found in paid.items() if len(found) > 1}
    assert not twice, f"events paid twice: {twice}"
    wanted = expected_wei(price=price)
    assert sorted(paid) == sorted(wanted), "the events paid on-chain differ from the database's"
    singles = {log.item_id: log.amount for log in logs if log.item_id < BUNDLE_ITEM_BASE}
    assert singles == {pk: wanted[pk] for pk in singles}
    for bundle_id, event_ids, amount in DeliveryBundle.objects.values_list("pk", "event_ids", "amount_wei"):
        assert int(amount) == sum(wanted[int(pk)] for pk in event_ids), f"bundle {bundle_id} amount"
    assert total == sum(log.amount for log in logs) == sum(wanted.values())
    assert distributed_total() == holder_total()
    for pk, document in RevenueEvent.objects.values_list("pk", "metadata"):
        data = DeliveryMetadata.of(document)
        (log,) = paid[pk]
        assert data.status == DeliveryStatus.DELIVERED, (pk, document)
        assert data.tx_hash == log.tx_hash and data.block_number == log.block_number, (pk, document, log)
        assert data.block_hash == log.block_hash and data.amount_wei == wanted[pk], (pk, document)
        assert isinstance(data.nonce, int) and data.delivered_at


def left_out_tied(batch_id: int, event_ids: list[int]) -> Callable[[Any], None]:
    """A check for after every cycle: while their batch is not confirmed, the events left out
    of its latest version (its earlier version, carrying them, may still be mined) stay with it
    (submitted, its own) and are in no other batch; nothing unpaid is delivered."""

    def check(_result: Any) -> None:
        assert_no_unpaid_delivered()
        batch = DeliveryBatch.objects.get(pk=batch_id)
        for pk in event_ids:
            others = [b.pk for b in DeliveryBatch.objects.exclude(pk=batch_id) if pk in b.event_ids]
            if batch.status == "submitted":
                data = metadata(pk)
                assert (data.status, data.batch_id) == (DeliveryStatus.SUBMITTED, batch_id), (pk, data)
                assert others == [], f"event {pk} sent again while batch {batch_id} may still pay it"

    return check


def alerts() -> list[str]:
    """The subjects of the alerts mailed to the admins so far (locmem backend in tests)."""
    return [message.subject.removeprefix(settings.EMAIL_SUBJECT_PREFIX) for message in mail.outbox]


def drive(
    *,
    until: Callable[[], bool],
    mine: Callable[[], None] | None = None,
    max_batches: int = 5,
    cycles: int = 30,
    timeout: float = 120.0,
    each: Callable[[DeliveryCycleResult], None] | None = None,
) -> list[DeliveryCycleResult]:
    """Run delivery cycles (mining a block between them when the chain does not) until
    ``until()`` holds; fails after ``cycles`` cycles or ``timeout`` seconds. ``each`` is
    called after every cycle (e.g. to check an invariant meanwhile)."""
    results = []
    deadline = time.monotonic() + timeout
    for _ in range(cycles):
        results.append(revenue_events_deliver(max_batches=max_batches))
        if each is not None:
            each(results[-1])
        if until():
            return results
        if time.monotonic() > deadline:
            break
        if mine is not None:
            mine()
    raise AssertionError(f"not done after {len(results)} cycles: {statuses()}; last result {results[-1].as_dict()}")


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


# A stream of its own for the events committed outside a test's transaction: the seeded
# streams (ids 0-9) may be missing from what is committed (a transactional test earlier on
# the same worker flushed them; each test restores them inside its own transaction only),
# and restoring them from another connection would wait on that transaction's rows.
COMMITTED_STREAM_ID = 99


def committed_event(source_id: str) -> int:
    """A pending event committed outside the test's transaction; delete it with committed_event_delete."""

    def create() -> int:
        RevenueStream.objects.get_or_create(id=COMMITTED_STREAM_ID, defaults={"name": "test-committed"})
        return RevenueEvent.objects.create(
            stream_id=COMMITTED_STREAM_ID,
            source_type="test-committed",
            source_id=source_id,
            currency="USDT",
            gross_amount=Decimal("1"),
            net_amount=Decimal("1"),
            holder_share=Decimal("0.15"),
            reserve_share=Decimal("0.85"),
            metadata=document_initial(timestamp=timezone.now().isoformat(), stream_name="0", correlation_id="-"),
            created_at=timezone.now(),
        ).pk

    return int(in_thread(create))


def committed_event_delete(pk: int) -> None:
    def delete() -> None:
        RevenueEvent.objects.filter(pk=pk).delete()
        RevenueStream.objects.filter(id=COMMITTED_STREAM_ID, events__isnull=True).delete()

    in_thread(delete)
