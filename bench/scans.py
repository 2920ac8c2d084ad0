"""4. Scans at scale: the delivery re-drive selection and the on-chain failure report over
a million revenue events, timed and explained (EXPLAIN (ANALYZE, BUFFERS))."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from bench.infra import log
from bench.seed import seed_revenue_events, vacuum_analyze
from core.db import select_plans
from revenue.delivery.metadata import (
    DeliveryStatus,
    Key,
    attempts_expression,
    not_carried,
    status_in,
    text_cast,
)
from revenue.models import RevenueEvent
from revenue.reports import onchain_failure_report

REDRIVE_BATCH = 20


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def redrive_failed_only(now: datetime) -> list[int]:
    """The re-drive batch as the issue defines it (failed, due, attempts < 5, by id), written
    like the service writes its reads: the status once, with the key lookup of the partial
    index's predicate (revenue.delivery.selectors says why)."""
    return list(
        RevenueEvent.objects.alias(
            next_retry_at=text_cast(Key.NEXT_RETRY_AT),
            attempts=attempts_expression(),
        )
        .filter(status_in(DeliveryStatus.FAILED) & not_carried())
        .filter(next_retry_at__lte=_iso(now), attempts__lt=5)
        .order_by("id")
        .values_list("pk", flat=True)[:REDRIVE_BATCH]
    )


def _service_redrive() -> Callable[[datetime], list[int]] | None:
    """The delivery service's own re-drive read, when it is there."""
    try:
        from revenue.delivery.selectors import revenue_events_deliverable
    except ImportError:
        return None
    batch = int(getattr(settings, "DELIVERY_REDRIVE_BATCH", REDRIVE_BATCH))

    def select(now: datetime) -> list[int]:
        return [e.id for e in revenue_events_deliverable(now=now, limit=batch, stale_only=True)]

    return select


def _time(work: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    work()  # warm the caches once, as a running service would have
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        runs.append((time.perf_counter() - began) * 1000)
    return statistics.median(runs), runs


def _explain(work: Callable[[], object]) -> list[str]:
    return select_plans(work, explain="EXPLAIN (ANALYZE, BUFFERS)")


def run_scans(*, events: int, failed: int, repeats: int) -> tuple[dict[str, Any], str]:
    began = time.perf_counter()
    seed_revenue_events(count=events, failed=failed)
    vacuum_analyze("revenue_revenueevent")
    log(f"scans: {events:,} revenue events ({failed:,} failed) generated in {time.perf_counter() - began:.1f} s")
    now = timezone.now()
    result: dict[str, Any] = {"scan_events": events, "scan_failed": failed}
    sections: list[str] = []

    strict_ms, _ = _time(lambda: redrive_failed_only(now), repeats)
    result["redrive_failed_only_ms"] = strict_ms
    result["redrive_failed_only_rows"] = len(redrive_failed_only(now))
    sections.append(
        "== re-drive batch (failed, due, attempts < 5, by id; ORM)\n"
        + "\n\n".join(_explain(lambda: redrive_failed_only(now)))
    )

    service = _service_redrive()
    if service is not None:
        try:
            service_ms, _ = _time(lambda: service(now), repeats)
            result["redrive_service_ms"] = service_ms
            result["redrive_service_rows"] = len(service(now))
            sections.append(
                "== re-drive batch of the delivery service (revenue_events_deliverable, stale_only)\n"
                + "\n\n".join(_explain(lambda: service(now)))
            )
        except Exception as exc:  # the service is being written: measure what works, say what did not
            log(
                f"scans: the delivery service's re-drive query failed ({type(exc).__name__}: {exc}); "
                "using the ORM query"
            )
            service = None
    result["redrive_select_ms"] = result.get("redrive_service_ms", strict_ms)
    result["redrive_source_service"] = 1 if service is not None else 0

    report_ms, _ = _time(lambda: onchain_failure_report(hours=24, now=now), repeats)
    report = onchain_failure_report(hours=24, now=now)
    result["failure_report_ms"] = report_ms
    result["failure_report_failures"] = int(report.summary["total_failures"])  # type: ignore[call-overload]
    sections.append(
        "== onchain_failure_report(hours=24)\n"
        + "\n\n".join(_explain(lambda: onchain_failure_report(hours=24, now=now)))
    )
    return result, "\n\n".join(sections)
