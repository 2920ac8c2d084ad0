"""The on-chain failure report, aggregated in SQL (a grouped query and one windowed
query for the listed events), so it stays fast at millions of events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, IntegerField, Max, Q, Sum, Value, Window
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, RowNumber
from django.db.models.lookups import Exact
from django.utils import timezone

from revenue.models import RevenueEvent, RevenueStream

STALE_PENDING_MINUTES = 10
EVENTS_PER_STREAM = 50


@dataclass(frozen=True, slots=True)
class FailureReport:
    summary: dict[str, object]
    by_stream: list[dict[str, object]]


def attempts_expression() -> Cast:
    return Cast(Coalesce(KT("metadata__retryAttempts"), Value("0")), IntegerField())


def status_is(status: str) -> Q:
    """On PostgreSQL compare the ->> text, which the status expression index covers (a
    jsonb -> comparison would scan every event); SQLite's JSON1 needs the key lookup."""
    if connection.vendor == "postgresql":
        return Q(Exact(KT("metadata__onChainDeliveryStatus"), status))
    return Q(metadata__onChainDeliveryStatus=status)


def failures_filter(*, now: datetime) -> Q:
    """Failed events, and events left pending with no attempt for over 10 minutes."""
    status = "metadata__onChainDeliveryStatus"
    stale = now - timedelta(minutes=STALE_PENDING_MINUTES)
    return Q(**{status: "failed"}) | (
        Q(**{status: "pending"}) & Q(created_at__lt=stale) & Q(metadata__lastRetryAt__isnull=True)
    )


def critical_filter() -> Q:
    return Q(metadata__critical=True) | Q(attempts__gte=settings.DELIVERY_MAX_ATTEMPTS)


def onchain_failure_report(*, hours: int, stream_id: int | None = None, now: datetime | None = None) -> FailureReport:
    moment = now or timezone.now()
    failures = RevenueEvent.objects.filter(created_at__gte=moment - timedelta(hours=hours)).filter(
        failures_filter(now=moment)
    )
    if stream_id is not None:
        failures = failures.filter(stream_id=stream_id)
    failures = failures.annotate(attempts=attempts_expression())

    grouped = list(
        failures.values("stream_id")
        .annotate(
            count=Count("id"),
            total_holder_share=Sum("holder_share"),
            max_retries=Max("attempts"),
            critical=Count("id", filter=critical_filter()),
        )
        .order_by("stream_id")
    )
    names = dict(RevenueStream.objects.values_list("id", "name"))
    listed = (
        failures.annotate(
            row=Window(RowNumber(), partition_by=[F("stream_id")], order_by=[F("created_at").desc(), F("id").desc()]),
            last_error=KT("metadata__lastError"),
            next_retry_at=KT("metadata__nextRetryAt"),
        )
        .filter(row__lte=EVENTS_PER_STREAM)
        .values(
            "id", "stream_id", "holder_share", "description", "created_at", "attempts", "last_error", "next_retry_at"
        )
    )
    events_by_stream: dict[int, list[dict[str, object]]] = {}
    for row in listed:
        events_by_stream.setdefault(row["stream_id"], []).append(
            {
                "id": row["id"],
                "holder_share": row["holder_share"],
                "description": row["description"],
                "created_at": row["created_at"],
                "retry_attempts": row["attempts"],
                "last_error": row["last_error"],
                "next_retry_at": row["next_retry_at"],
            }
        )
    in_flight_too_long = (
        RevenueEvent.objects.filter(status_is("submitted"))
        .filter(created_at__lt=moment - timedelta(minutes=STALE_PENDING_MINUTES))
        .count()
    )
    summary = {
        "total_failures": sum(int(g["count"]) for g in grouped),
        "critical_failures": sum(int(g["critical"]) for g in grouped),
        "total_holder_share_pending": sum((g["total_holder_share"] for g in grouped), Decimal(0)),
        "period_hours": hours,
        "needs_reconciliation": in_flight_too_long,
    }
    by_stream = [
        {
            "stream_id": g["stream_id"],
            "stream_name": names.get(g["stream_id"], str(g["stream_id"])),
            "count": g["count"],
            "critical": g["critical"],
            "total_holder_share": g["total_holder_share"],
            "max_retries": g["max_retries"],
            "events": events_by_stream.get(g["stream_id"], []),
        }
        for g in grouped
    ]
    return FailureReport(summary=summary, by_stream=by_stream)
