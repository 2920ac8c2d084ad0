"""Admin for reviewing revenue and its on-chain delivery: what failed, why, and what the
system is doing about it; plus a failure report page with a per-stream chart."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from core.text import parse_id
from revenue.delivery.metadata import (
    DeliveryStatus,
    Key,
    attempts_expression,
    lookup,
    status_expression,
    status_in,
    text,
)
from revenue.models import ChainDeployment, DeliveryBatch, DeliveryBundle, RevenueEvent, RevenueStream
from revenue.reports import onchain_failure_report
from revenue.worker_status import onchain_worker_status


class DeliveryStatusFilter(admin.SimpleListFilter):
    title = "delivery status"
    parameter_name = "delivery"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status.value, status.value) for status in DeliveryStatus]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is not None and value in DeliveryStatus._value2member_map_:
            return queryset.filter(status_in(DeliveryStatus(value)))
        return queryset


@admin.register(RevenueEvent)
class RevenueEventAdmin(admin.ModelAdmin):
    list_display = ("id", "stream", "source", "gross_amount", "holder_share", "delivery_status", "attempts",
                    "last_error", "next_retry", "tx_hash", "created_at")  # fmt: skip
    list_filter = (DeliveryStatusFilter, "stream")
    search_fields = ("source_id", lookup(Key.TX_HASH))
    list_select_related = ("stream",)
    readonly_fields = ("stream", "source_type", "source_id", "currency", "gross_amount", "net_amount", "holder_share",
                       "reserve_share", "description", "created_at", "metadata_pretty")  # fmt: skip
    exclude = ("metadata",)
    actions = ["retry_delivery_now"]
    show_full_result_count = False
    change_list_template = "admin/revenue/revenueevent/change_list.html"
    display_annotations = ("status", "attempts", "error", "retry_at", "hash")  # as in get_queryset

    def get_queryset(self, request: HttpRequest) -> QuerySet[RevenueEvent]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                status=status_expression(),
                attempts=attempts_expression(),
                error=text(Key.LAST_ERROR),
                retry_at=text(Key.NEXT_RETRY_AT),
                hash=text(Key.TX_HASH),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # The annotations of get_queryset are for display and ordering. Django lets any URL
        # lookup on a non-field through, and on SQLite `?status=failed` (a KT against raw
        # text) was a 500: filtering goes through the list filters (`?delivery=`).
        if lookup.split(LOOKUP_SEP)[0] in self.display_annotations:
            return False
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description="source")
    def source(self, obj: Any) -> str:
        return f"{obj.source_type}:{obj.source_id}"

    @admin.display(description="delivery", ordering="status")
    def delivery_status(self, obj: Any) -> str:
        return str(obj.status)

    @admin.display(description="attempts", ordering="attempts")
    def attempts(self, obj: Any) -> int:
        return int(obj.attempts or 0)

    @admin.display(description="last error")
    def last_error(self, obj: Any) -> str:
        return (obj.error or "")[:120]

    @admin.display(description="next retry", ordering="retry_at")
    def next_retry(self, obj: Any) -> str:
        return obj.retry_at or ""

    @admin.display(description="tx hash")
    def tx_hash(self, obj: Any) -> str:
        return obj.hash or ""

    @admin.display(description="metadata")
    def metadata_pretty(self, obj: RevenueEvent) -> str:
        return format_html(
            "<pre style='white-space: pre-wrap'>{}</pre>", json.dumps(obj.metadata, indent=2, sort_keys=True)
        )

    @admin.action(description="Retry delivery now")
    def retry_delivery_now(self, request: HttpRequest, queryset: QuerySet[RevenueEvent]) -> None:
        # Imported here: the delivery package pulls in web3, which web workers otherwise never load.
        from revenue.delivery.service import revenue_event_delivery_retry

        queued = sum(revenue_event_delivery_retry(event_id=pk) for pk in queryset.values_list("pk", flat=True))
        skipped = queryset.count() - queued
        self.message_user(request, f"{queued} event(s) queued for delivery again.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} event(s) skipped: in flight or already delivered.", messages.WARNING)

    def get_urls(self) -> list[Any]:
        report = path(
            "failure-report/",
            self.admin_site.admin_view(self.failure_report_view),
            name="revenue_revenueevent_failure_report",
        )
        return [report, *super().get_urls()]

    def failure_report_view(self, request: HttpRequest) -> HttpResponse:
        hours = parse_id(request.GET.get("hours", "24")) or 24
        hours = hours if hours <= 24 * 366 else 24
        report = onchain_failure_report(hours=hours)
        peak = max((int(s["count"]) for s in report.by_stream), default=0)  # type: ignore[call-overload]
        bars = [
            {**s, "percent": round(100 * int(s["count"]) / peak) if peak else 0}  # type: ignore[call-overload]
            for s in report.by_stream
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "On-chain delivery failure report",
            "opts": self.model._meta,
            "report": report,
            "bars": bars,
            "hours": hours,
            "worker": onchain_worker_status(),
        }
        return TemplateResponse(request, "admin/revenue/failure_report.html", context)


@admin.register(RevenueStream)
class RevenueStreamAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "collected", "distributed", "target_monthly")
    readonly_fields = ("id", "collected", "distributed")


@admin.register(DeliveryBatch)
class DeliveryBatchAdmin(admin.ModelAdmin):
    list_display = ("id", "deployment", "size", "status", "foreign", "nonce", "mined_tx_hash", "block_number",
                    "submitted_at", "confirmed_at", "finalized_at", "last_error")  # fmt: skip
    list_filter = ("status", "foreign", "deployment")
    search_fields = ("mined_tx_hash",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in DeliveryBatch._meta.fields]


@admin.register(DeliveryBundle)
class DeliveryBundleAdmin(admin.ModelAdmin):
    list_display = ("id", "stream", "amount_wei", "created_at")
    list_filter = ("stream",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in DeliveryBundle._meta.fields]


@admin.register(ChainDeployment)
class ChainDeploymentAdmin(admin.ModelAdmin):
    list_display = ("id", "chain_id", "contract_address", "signer_address", "deployed_at", "embedded", "active")
    list_filter = ("active", "embedded")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ChainDeployment._meta.fields]
