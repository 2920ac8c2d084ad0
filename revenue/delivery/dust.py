"""Dust: holder shares worth less than DELIVERY_MIN_ITEM_WEI are not paid one by one
(a batched item costs thousands of gas whatever it carries). They are carried forward
per stream (still `pending`, with their amount and when they were carried) until together they
are worth the minimum, or the oldest has waited DELIVERY_DUST_MAX_AGE_SECONDS; then
they become one bundle, paid on-chain as one item (``BUNDLE_ITEM_BASE + bundle id``).

A bundle is fixed when it is formed (its events and amount never change) and is
committed before any transaction carries it, so resending it is as safe as resending an
event: the reserve pays its id once. Its events are delivered together when it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from revenue.delivery.metadata import DeliveryStatus, iso, patch_amount, patch_bundled, patch_carried, status_in
from revenue.delivery.selectors import carried_dust
from revenue.jsonb import JsonMerge, json_patch_per_row
from revenue.models import DeliveryBundle, RevenueEvent

logger = logging.getLogger("revenue.delivery")


@dataclass(frozen=True, slots=True)
class BundlePlan:
    stream_id: int
    events: list[tuple[int, int]]  # (event id, its amount in wei)

    @property
    def amount_wei(self) -> int:
        return sum(amount for _, amount in self.events)


def is_dust(amount_wei: int) -> bool:
    return amount_wei < settings.DELIVERY_MIN_ITEM_WEI


def bundle_plans(
    carried: dict[int, list[tuple[int, int, str]]], *, minimum_wei: int, oldest_allowed: str
) -> list[BundlePlan]:
    """Pure: the streams whose carried dust is worth a bundle (its sum reaches the minimum,
    or its oldest share was carried before ``oldest_allowed``, an ISO timestamp)."""
    plans = []
    for stream_id, rows in sorted(carried.items()):
        total = sum(amount for _, amount, _ in rows)
        if rows and (total >= minimum_wei or min(since for _, _, since in rows) < oldest_allowed):
            plans.append(BundlePlan(stream_id=stream_id, events=[(pk, amount) for pk, amount, _ in rows]))
    return plans


@transaction.atomic(durable=True)
def dust_carry(*, amounts: dict[int, int], now: datetime) -> int:
    """Pending events whose share is dust: carried forward with their amount."""
    if not amounts:
        return 0
    return (
        RevenueEvent.objects.filter(pk__in=list(amounts))
        .filter(status_in(DeliveryStatus.PENDING, DeliveryStatus.FAILED))
        .update(
            metadata=JsonMerge(
                JsonMerge("metadata", patch_carried(now=now)),
                json_patch_per_row({pk: patch_amount(wei) for pk, wei in amounts.items()}),
            )
        )
    )


def dust_bundles_form(*, now: datetime) -> list[DeliveryBundle]:
    """Bundle every stream's carried dust that is worth it; one transaction per bundle."""
    oldest_allowed = iso(now - timedelta(seconds=settings.DELIVERY_DUST_MAX_AGE_SECONDS))
    plans = bundle_plans(carried_dust(), minimum_wei=settings.DELIVERY_MIN_ITEM_WEI, oldest_allowed=oldest_allowed)
    return [bundle for plan in plans if (bundle := _bundle_create(plan, now=now)) is not None]


@transaction.atomic(durable=True)
def _bundle_create(plan: BundlePlan, *, now: datetime) -> DeliveryBundle | None:
    event_ids = [pk for pk, _ in plan.events]
    bundle = DeliveryBundle.objects.create(
        stream_id=plan.stream_id, event_ids=event_ids, amount_wei=str(plan.amount_wei), created_at=now
    )
    taken = (
        RevenueEvent.objects.filter(pk__in=event_ids)
        .filter(status_in(DeliveryStatus.PENDING))
        .update(metadata=JsonMerge("metadata", patch_bundled(bundle_id=bundle.pk)))
    )
    if taken != len(event_ids):  # another sender took some meanwhile (cannot happen under the sender lock)
        transaction.set_rollback(True)
        return None
    logger.info(
        "dust bundle formed",
        extra={"bundle_id": bundle.pk, "stream_id": plan.stream_id, "events": taken, "amount_wei": plan.amount_wei},
    )
    return bundle
