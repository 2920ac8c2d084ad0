"""The delivery's pure rules, tested directly: the price bound, dust bundles, replacement
fees, grouping logs by transaction, and the metadata document's one owner."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from revenue.chain.client import DeliveryItem, PaymentLog, bump_fees
from revenue.delivery.broadcast import PlanEntry, budget_fit, replacement_fees
from revenue.delivery.dust import bundle_plans
from revenue.delivery.metadata import (
    DeliveryMetadata,
    DeliveryStatus,
    Key,
    iso,
    patch_delivered,
    patch_failed,
    patch_requeued,
    patch_returned,
    patch_submitted,
    patch_unconfirmed,
)
from revenue.delivery.pricing import price_within
from revenue.delivery.scan import mined_transactions
from revenue.models import RevenueEvent
from tests.revenue.delivery_support import event_patch, events_create, metadata

ROOT = Path(__file__).resolve().parents[2]

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10**6), places=2, allow_nan=False)


# --------------------------------------------------------------------------- price bound


@given(anchor=prices, factor=st.decimals(min_value=Decimal("0.5"), max_value=Decimal(2), places=3))
def test_a_price_is_trusted_within_the_deviation_of_its_anchor(anchor: Decimal, factor: Decimal) -> None:
    price = anchor * factor
    within = price_within(price=price, anchor=anchor, max_deviation=Decimal("0.2"))
    assert within == (abs(factor - 1) <= Decimal("0.2"))


@given(anchor=prices)
def test_a_price_mistyped_by_orders_of_magnitude_is_refused(anchor: Decimal) -> None:
    for typo in (anchor / 1000, anchor * 1000, anchor / 10, anchor * 10, Decimal(0), -anchor):
        assert not price_within(price=typo, anchor=anchor, max_deviation=Decimal("0.2"))
    assert price_within(price=anchor, anchor=anchor, max_deviation=Decimal(0))


# --------------------------------------------------------------------------- dust bundles


def test_carried_dust_becomes_a_bundle_at_the_minimum_or_when_old():
    now = datetime(2026, 1, 2, tzinfo=UTC)
    fresh, old = iso(now), iso(now - timedelta(days=8))
    carried = {
        1: [(10, 4, fresh), (11, 5, fresh)],  # 9 < 10: waits
        2: [(20, 6, fresh), (21, 4, fresh)],  # 10: worth it
        3: [(30, 1, old), (31, 1, fresh)],  # below, but its oldest share waited too long
    }
    plans = bundle_plans(carried, minimum_wei=10, oldest_allowed=iso(now - timedelta(days=7)))
    assert [(p.stream_id, p.events, p.amount_wei) for p in plans] == [
        (2, [(20, 6), (21, 4)], 10),
        (3, [(30, 1), (31, 1)], 2),
    ]


@given(
    carried=st.dictionaries(st.integers(0, 9), st.lists(st.integers(0, 100), min_size=1, max_size=8), max_size=10),
    minimum=st.integers(1, 500),
)
def test_a_bundle_carries_all_of_its_streams_dust_and_exactly_its_sum(carried: dict, minimum: int) -> None:
    since = iso(datetime(2026, 1, 1, tzinfo=UTC))
    rows = {stream: [(stream * 100 + i, wei, since) for i, wei in enumerate(ws)] for stream, ws in carried.items()}
    plans = bundle_plans(rows, minimum_wei=minimum, oldest_allowed=since)
    assert {p.stream_id for p in plans} == {s for s, ws in carried.items() if sum(ws) >= minimum}
    for plan in plans:
        assert plan.events == [(pk, wei) for pk, wei, _ in rows[plan.stream_id]]
        assert plan.amount_wei == sum(carried[plan.stream_id])


# --------------------------------------------------------------------------- replacement fees


@given(
    old_max=st.integers(1, 10**12),
    old_priority=st.integers(1, 10**10),
    suggested_max=st.integers(1, 10**12),
    suggested_priority=st.integers(1, 10**10),
    cap=st.integers(1, 10**13),
)
def test_replacement_fees_outbid_the_old_transaction_within_the_cap(
    old_max: int, old_priority: int, suggested_max: int, suggested_priority: int, cap: int
) -> None:
    old_priority = min(old_priority, old_max)
    fees = replacement_fees(
        old_max=old_max,
        old_priority=old_priority,
        suggested_max=suggested_max,
        suggested_priority=suggested_priority,
        cap=cap,
    )
    smallest = bump_fees(old_max, old_priority)
    if max(smallest) > cap:
        assert fees is None  # no valid replacement fits: the caller reports it, never loops
        return
    assert fees is not None
    max_fee, priority = fees
    assert max_fee <= cap and priority <= max_fee
    assert max_fee >= smallest[0] and priority >= smallest[1]  # nodes accept it as a replacement
    assert max_fee * 10 >= old_max * 11 and priority * 10 >= old_priority * 11


# --------------------------------------------------------------------------- what a batch can pay


def _entries(amounts: list[int]) -> list[PlanEntry]:
    return [
        PlanEntry(item=DeliveryItem(item_id=i + 1, stream_id=0, amount_wei=amount), event_ids=(i + 1,), own=True)
        for i, amount in enumerate(amounts)
    ]


def test_a_batch_takes_what_fits_its_budget_oldest_first_and_holds_what_never_can():
    kept, unpayable = budget_fit(_entries([5, 20, 3, 4, 2]), budget=10)
    assert [e.item.amount_wei for e in kept] == [5, 3, 2]  # 4 fits alone: the next batch takes it
    assert [e.item.amount_wei for e in unpayable] == [20]  # more than the whole budget: held
    assert budget_fit(_entries([10**35, 1]), budget=10**23) == (_entries([10**35, 1])[1:], _entries([10**35])[:1])


@given(amounts=st.lists(st.integers(0, 10**6), max_size=30), budget=st.integers(0, 2 * 10**6))
def test_a_batchs_budget_is_never_exceeded_and_the_oldest_that_fits_always_goes(amounts: list[int], budget: int):
    entries = _entries(amounts)
    kept, unpayable = budget_fit(entries, budget=budget)
    assert sum(e.item.amount_wei for e in kept) <= budget
    assert all(e.item.amount_wei > budget for e in unpayable)
    assert all(e.item.amount_wei <= budget for e in kept)
    first = next((e for e in entries if e.item.amount_wei <= budget), None)
    assert first is None or first in kept
    # an entry left for the next batch fits alone, not beside what was taken before it
    for index, entry in enumerate(entries):
        if entry not in kept and entry not in unpayable:
            taken = sum(e.item.amount_wei for e in kept if entries.index(e) < index)
            assert entry.item.amount_wei <= budget < taken + entry.item.amount_wei


# --------------------------------------------------------------------------- logs


def _log(item: int, tx: str, block: int, index: int, *, paid: bool = True) -> PaymentLog:
    return PaymentLog(item, paid, 0 if paid else None, 5, tx, block, f"0x{block:064x}", index)


def test_logs_are_grouped_by_transaction_in_chain_order():
    logs = [_log(1, "0xa", 5, 0), _log(2, "0xa", 5, 1), _log(1, "0xb", 6, 0, paid=False), _log(3, "0xb", 6, 1)]
    found = mined_transactions(logs)
    assert [(m.tx_hash, m.block_number) for m in found] == [("0xa", 5), ("0xb", 6)]
    assert [log.item_id for log in found[0].paid] == [1, 2] and not found[0].refused
    assert [log.item_id for log in found[1].paid] == [3] and [log.item_id for log in found[1].refused] == [1]


# --------------------------------------------------------------------------- the metadata document


@pytest.mark.django_db
def test_the_patches_move_an_event_through_its_statuses(eth_market):
    (pk,) = events_create(1)
    now = timezone.now()
    assert metadata(pk).status == DeliveryStatus.PENDING and metadata(pk).retry_attempts == 0
    event_patch(pk, patch_submitted(batch_id=7, tx_hash="0x1", nonce=3, now=now))
    assert (metadata(pk).status, metadata(pk).batch_id, metadata(pk).nonce) == (DeliveryStatus.SUBMITTED, 7, 3)
    event_patch(pk, patch_failed(attempts=1, error="e", now=now, next_retry_at=now))
    assert metadata(pk).status == DeliveryStatus.FAILED and metadata(pk).next_retry_at == iso(now)
    event_patch(pk, patch_failed(attempts=5, error="e", now=now, next_retry_at=None))
    assert metadata(pk).status == DeliveryStatus.CRITICAL and metadata(pk).next_retry_at is None
    event_patch(pk, patch_requeued(now=now))
    assert (metadata(pk).status, metadata(pk).retry_attempts) == (DeliveryStatus.PENDING, 0)
    event_patch(pk, patch_delivered(batch_id=8, tx_hash="0x2", nonce=4, block_number=9, block_hash="0x3", now=now))
    assert (metadata(pk).status, metadata(pk).block_hash) == (DeliveryStatus.DELIVERED, "0x3")
    event_patch(pk, patch_unconfirmed(now=now))
    assert metadata(pk).status == DeliveryStatus.SUBMITTED and metadata(pk).block_number is None
    event_patch(pk, patch_returned(now=now))
    data = metadata(pk)
    assert data.status == DeliveryStatus.PENDING and data.tx_hash is None and data.batch_id is None
    assert data.reorged_at == iso(now)


@pytest.mark.django_db
def test_the_migration_turns_the_critical_flag_into_a_status(eth_market):
    from importlib import import_module

    migration = import_module("revenue.migrations.0006_delivery_exactly_once")
    flagged, plain = events_create(2)
    legacy = {Key.STATUS.value: "failed", "critical": True}
    RevenueEvent.objects.filter(pk=flagged).update(metadata=legacy)
    migration.forward(apps, None)
    assert DeliveryMetadata.of(RevenueEvent.objects.get(pk=flagged).metadata).status == DeliveryStatus.CRITICAL
    assert "critical" not in RevenueEvent.objects.get(pk=flagged).metadata
    assert metadata(plain).status == DeliveryStatus.PENDING


def test_no_module_but_the_owner_spells_the_documents_keys():
    """revenue.delivery.metadata owns the keys: code, templates, bench and tests reach them
    through it (the generic ones, like nonce or blockHash, are also web3 field names)."""
    owner = ROOT / "revenue" / "delivery" / "metadata.py"
    generic = {Key.NONCE, Key.BLOCK_NUMBER, Key.BLOCK_HASH, Key.TIMESTAMP}
    spelled = re.compile("|".join(re.escape(key.value) for key in Key if key not in generic))
    assert spelled.search(f'filter(metadata__{Key.STATUS.value}="failed")')  # it can fail
    offenders = []
    for folder in ("revenue", "orders", "flywheel", "accounts", "core", "templates", "static", "bench", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in {".py", ".html", ".js"} or path == owner or "migrations" in path.parts:
                continue
            if path.is_relative_to(ROOT / "static" / "vendor"):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if spelled.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
