"""Admin for reviewing revenue and its on-chain delivery: what failed, why, and what the
system is doing about it; a failure report page with a per-stream chart, and the delivery
worker's status. Every record here is read-only (core.admin.ReadOnlyAdmin); the one thing
staff may do, queue an event's delivery again, goes through revenue.staff_actions and is
recorded (StaffAction)."""

from __future__ import annotations

import json
from decimal import Decimal
from types import ModuleType
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from core.admin import ReadOnlyAdmin
from core.errors import ApplicationError, InvalidInput
from core.text import parse_id
from orders.templatetags.page_format import amount
from revenue.chain_status import chain_health
from revenue.delivery.metadata import (
    RETRYABLE_STATUSES,
    DeliveryMetadata,
    DeliveryStatus,
    Key,
    attempts_expression,
    lookup,
    status_expression,
    status_is,
    text,
)
from revenue.delivery.selectors import items_events
from revenue.models import (
    ChainDeployment,
    DeliveryBatch,
    DeliveryBatchStatus,
    DeliveryBundle,
    RevenueEvent,
    RevenueStream,
    StaffAction,
)
from revenue.reports import (
    STALE_PENDING_MINUTES,
    delivery_pause,
    held_rule,
    onchain_failure_report,
    stale_pending_rule,
)
from revenue.selectors import stream_usd_totals
from revenue.templatetags.revenue_admin import when
from revenue.worker_status import onchain_worker_status, worker_error_current, worker_stalled


def _staff_actions() -> ModuleType:
    """revenue.staff_actions on first use, not when this module loads: it brings web3,
    eth-account and eth-abi (about a second of CPU), and Django loads every admin module in
    every process it sets up: the engine, beat, each manage.py command, which never use them."""
    from revenue import staff_actions

    return staff_actions


RETRYABLE = {str(status) for status in RETRYABLE_STATUSES}
STALE_PENDING = "stale_pending"  # the list's filter value for revenue.reports.stale_pending_rule
HELD = "held"  # the list's filter value for revenue.reports.held_rule
REASON_PLACEHOLDER = "reason (optional, kept in the audit trail)"


class RetryActionForm(ActionForm):
    """The list's action bar with the retry's optional reason beside it (recorded on each
    StaffAction row the retry writes). Checked by the service, not here: a form error would
    drop the action with Django's bare "No action selected"."""

    reason = forms.CharField(
        required=False,
        label="Reason",
        widget=forms.TextInput(attrs={"maxlength": 500, "size": 40, "placeholder": REASON_PLACEHOLDER}),
    )


def _reason_posted(request: HttpRequest) -> str | None:
    """The reason typed, or None when the field was left empty (no reason: a retry needs none)."""
    return request.POST.get("reason", "") or None


def _invalid_say(invalid: InvalidInput) -> str:
    fields = invalid.fields or {}
    problems = [*fields.get("event_ids", []), *(f"Nothing was queued, the reason is refused: {p}"
                                                   for p in fields.get("reason", []))]  # fmt: skip
    return " ".join(problems) or invalid.message


class DeliveryStatusFilter(admin.SimpleListFilter):
    title = "delivery status"
    parameter_name = "delivery"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        statuses = [(status.value, status.value) for status in DeliveryStatus]
        return [
            *statuses,
            (STALE_PENDING, f"pending > {STALE_PENDING_MINUTES} min (stale)"),
            (HELD, "held: the signer cannot pay their share"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == STALE_PENDING:  # as the failure report and the worker status count them
            return queryset.filter(status_is(DeliveryStatus.PENDING)).filter(stale_pending_rule(now=timezone.now()))
        if value == HELD:  # as the failure report and the worker status count them (their index)
            return queryset.filter(held_rule())
        if value is not None and value in DeliveryStatus._value2member_map_:
            return queryset.filter(status_is(DeliveryStatus(value)))
        return queryset


class EventChangeList(ChangeList):
    """The event list sorted by delivery status breaks ties by id in the same direction, so
    that the status expression index (status, id) serves the page forwards or backwards.
    Django's tie-break is always `-pk`: ascending by status it sorted every event (610-870
    ms at 300,000 events)."""

    def get_ordering(self, request: HttpRequest, queryset: QuerySet[Any]) -> list[Any]:
        ordering = list(super().get_ordering(request, queryset))
        if len(ordering) == 2 and ordering[0] in ("status", "-status") and ordering[1] in ("pk", "-pk"):
            ordering[1] = "-pk" if ordering[0].startswith("-") else "pk"
        return ordering


@admin.register(RevenueEvent)
class RevenueEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "stream", "source", "gross_amount", "holder_share", "delivery_status", "attempts",
                    "last_error", "next_retry", "tx_hash", "created_at")  # fmt: skip
    list_filter = (DeliveryStatusFilter, "stream")
    search_fields = ("source_id", lookup(Key.TX_HASH))
    list_select_related = ("stream",)
    readonly_fields = ("stream", "source_type", "source_id", "currency", "gross_amount", "net_amount", "holder_share",
                       "reserve_share", "description", "created_at", "delivery_status", "attempts", "last_error",
                       "next_retry", "tx_hash", "batch", "metadata_pretty")  # fmt: skip
    exclude = ("metadata",)
    actions = ["retry_delivery_now"]
    action_form = RetryActionForm
    change_list_template = "admin/revenue/revenueevent/change_list.html"
    change_form_template = "admin/revenue/revenueevent/change_form.html"
    display_annotations = ("status", "attempts", "error", "retry_at", "hash")  # as in get_queryset

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return EventChangeList

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

    def has_retry_delivery_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("revenue.retry_delivery"))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Staff who may retry a delivery see the events they retry (as Django's change
        permission implies view): with retry_delivery alone the admin showed nothing."""
        return super().has_view_permission(request, obj) or self.has_retry_delivery_permission(request)

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
        # Dust waits for its stream's bundle (up to DELIVERY_DUST_MAX_AGE_SECONDS) on purpose:
        # a bare "pending" for days, with no alert, read as a stalled delivery.
        carried_at = DeliveryMetadata.of(obj.metadata).carried_at
        if carried_at:
            return f"{obj.status} (dust carried forward since {when(carried_at)})"
        return str(obj.status)

    @admin.display(description="attempts", ordering="attempts")
    def attempts(self, obj: Any) -> int:
        return int(obj.attempts or 0)

    @admin.display(description="last error")
    def last_error(self, obj: Any) -> str:
        return (obj.error or "")[:120]

    @admin.display(description="next retry", ordering="retry_at")
    def next_retry(self, obj: Any) -> str:
        return when(obj.retry_at)

    @admin.display(description="tx hash")
    def tx_hash(self, obj: Any) -> str:
        return obj.hash or ""

    @admin.display(description="delivery batch")
    def batch(self, obj: RevenueEvent) -> str:
        """The batch carrying (or that paid) the event, linked: its id was only in the metadata."""
        batch_id = DeliveryMetadata.of(obj.metadata).batch_id
        if batch_id is None:
            return "-"
        url = reverse("admin:revenue_deliverybatch_change", args=[batch_id])
        return format_html('<a href="{}" id="event-batch">delivery batch {}</a>', url, batch_id)

    @admin.display(description="metadata")
    def metadata_pretty(self, obj: RevenueEvent) -> str:
        return format_html("<pre class='metadata'>{}</pre>", json.dumps(obj.metadata, indent=2, sort_keys=True))

    @admin.action(description="Retry delivery now", permissions=["retry_delivery"])
    def retry_delivery_now(self, request: HttpRequest, queryset: QuerySet[RevenueEvent]) -> None:
        actions = _staff_actions()
        # One more than the limit is enough to refuse: "select all" may be millions of ids.
        ids = list(queryset.order_by().values_list("pk", flat=True)[: actions.RETRY_MAX_EVENTS + 1])
        try:
            outcome = actions.revenue_events_delivery_retry(
                event_ids=ids, actor=request.user, via="admin", reason=_reason_posted(request)
            )
        except InvalidInput as invalid:
            self.message_user(request, _invalid_say(invalid), messages.ERROR)
            return
        level = messages.SUCCESS if outcome.all_queued else messages.WARNING
        self.message_user(request, outcome.message(), level)
        _delivery_stopped_say(self, request, queued=bool(outcome.queued))

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("failure-report/", view(self.failure_report_view), name="revenue_revenueevent_failure_report"),
            path("worker-status/", view(self.worker_status_view), name="revenue_revenueevent_worker_status"),
            path("<int:event_id>/retry/", view(self.retry_view), name="revenue_revenueevent_retry"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        event = self.get_object(request, object_id)
        carried = event is not None and DeliveryMetadata.of(event.metadata).carried_at is not None
        retryable = event is not None and str(getattr(event, "status", "")) in RETRYABLE and not carried
        context = {
            **(extra_context or {}),
            "can_retry": retryable and self.has_retry_delivery_permission(request),
            "delivery_status": getattr(event, "status", ""),
        }
        return super().change_view(request, object_id, form_url, context)

    @staticmethod
    def _back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
        target = request.POST.get("next", "")
        safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False)
        return HttpResponseRedirect(target if target and safe else fallback)

    def retry_view(self, request: HttpRequest, event_id: int) -> HttpResponse:
        """The retry button of the event's page and of the failure report (POST only), with
        the optional reason typed beside it."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_retry_delivery_permission(request):
            raise PermissionDenied
        event = get_object_or_404(RevenueEvent, pk=event_id)
        back = reverse("admin:revenue_revenueevent_change", args=[event.pk])
        try:
            outcome = _staff_actions().revenue_events_delivery_retry(
                event_ids=[event.pk], actor=request.user, via="admin", reason=_reason_posted(request)
            )
        except InvalidInput as invalid:
            self.message_user(request, f"Event {event.pk}: {_invalid_say(invalid)}", messages.ERROR)
            return self._back(request, back)
        level = messages.SUCCESS if outcome.queued else messages.WARNING
        self.message_user(request, f"Event {event.pk}: {outcome.message()}", level)
        _delivery_stopped_say(self, request, queued=bool(outcome.queued))
        return self._back(request, back)

    def _require_view_permission(self, request: HttpRequest) -> None:
        """The report and the worker status show revenue events: staff who may not view them
        (the list and each event answer 403) may not read them here either."""
        if not self.has_view_permission(request):
            raise PermissionDenied

    def failure_report_view(self, request: HttpRequest) -> HttpResponse:
        self._require_view_permission(request)
        hours = parse_id(request.GET.get("hours", "24")) or 24
        hours = hours if hours <= 24 * 366 else 24
        report = onchain_failure_report(hours=hours)
        peak = max((int(s["count"]) for s in report.by_stream), default=0)  # type: ignore[call-overload]
        bars = [
            {**s, "percent": round(100 * int(s["count"]) / peak) if peak else 0}  # type: ignore[call-overload]
            for s in report.by_stream
        ]
        worker = onchain_worker_status()
        # Critical events wait for staff whenever they were created: the window (by creation)
        # left out those of earlier days while the alert and the worker status counted them.
        critical_outside = max(int(worker["counts"]["critical"]) - int(report.summary["critical_failures"]), 0)  # type: ignore[call-overload]
        context = {
            **self.admin_site.each_context(request),
            "title": "On-chain delivery failure report",
            "critical_outside": critical_outside,
            "opts": self.model._meta,
            "report": report,
            "bars": bars,
            "hours": hours,
            "worker": worker,
            "worker_stalled": worker_stalled(worker),
            "worker_failing": worker_error_current(worker),
            "chain_unreachable": _chain_unreachable(worker, node=chain_health()),
            "can_retry": self.has_retry_delivery_permission(request),
            "retryable": sorted(RETRYABLE),
        }
        return TemplateResponse(request, "admin/revenue/failure_report.html", context)

    def worker_status_view(self, request: HttpRequest) -> HttpResponse:
        self._require_view_permission(request)
        worker = onchain_worker_status()
        node = chain_health()  # once: a node that does not answer costs its timeout each time
        context = {
            **self.admin_site.each_context(request),
            "title": "On-chain delivery worker status",
            "opts": self.model._meta,
            "worker": worker,
            "worker_stalled": worker_stalled(worker),
            "worker_failing": worker_error_current(worker),
            "chain_node": node,
            "chain_unreachable": _chain_unreachable(worker, node=node),
        }
        return TemplateResponse(request, "admin/revenue/worker_status.html", context)


def _delivery_stopped_say(model_admin: admin.ModelAdmin[Any], request: HttpRequest, *, queued: bool) -> None:
    """Events queued while delivery is paused or disabled wait: said beside "queued", with
    the cause (the message alone read as if they were on their way)."""
    if not queued:
        return
    if not settings.DELIVERY_ENABLED:
        text = "Delivery is disabled (DELIVERY_ENABLED is off): nothing is sent until it is turned on."
    elif (pause := delivery_pause()) is not None:
        text = (
            f"Delivery is paused ({pause['cause']}: {pause['detail']}): the events queued wait, without using "
            "attempts, and go out once the cause is gone (see the worker status)."
        )
    else:
        return
    model_admin.message_user(request, text, messages.WARNING)


def _chain_unreachable(worker: dict[str, Any], *, node: str) -> bool:
    """The node does not answer the web process (``node``: chain_health's answer), or it did
    not answer the worker's last run."""
    if node == "down":
        return True
    return worker["last_run_at"] is not None and not worker["chain"]["connected"]


@admin.register(RevenueStream)
class RevenueStreamAdmin(admin.ModelAdmin):
    """Streams come from migrations (revenue.streams); their totals move with their events.
    Staff may reword a stream and set its monthly target, nothing else."""

    # In US dollars, each currency at its rate (revenue.selectors.stream_usd_totals): the
    # stream's own `collected` and `distributed` add USDT, ETH and BTC amounts as they are
    # (the list read 11.47 collected where the flywheel said 21.78 USD).
    list_display = ("id", "name", "collected_usd", "distributed_usd", "target_monthly")
    fields = ("id", "name", "description", "collected_usd", "distributed_usd", "target_monthly")
    readonly_fields = ("id", "collected_usd", "distributed_usd")

    def get_list_display(self, request: HttpRequest) -> Any:
        """The list's dollar figures, read once for every stream (two queries), when the first
        row is shown: Django asks for the list's columns twice a page, and the sum over every
        event ran each time (2 x 270 ms at 300,000 events)."""
        read: dict[int, tuple[Decimal, Decimal]] | None = None

        def totals(stream: RevenueStream) -> tuple[Decimal, Decimal]:
            nonlocal read
            if read is None:
                read = stream_usd_totals()
            return read.get(stream.pk, (Decimal(0), Decimal(0)))

        def collected_usd(stream: RevenueStream) -> str:
            return amount(totals(stream)[0])

        def distributed_usd(stream: RevenueStream) -> str:
            return amount(totals(stream)[1])

        collected_usd.short_description = "collected (USD)"  # type: ignore[attr-defined]
        distributed_usd.short_description = "distributed to holders (USD)"  # type: ignore[attr-defined]
        return ("id", "name", collected_usd, distributed_usd, "target_monthly")

    @admin.display(description="collected (USD)")
    def collected_usd(self, stream: RevenueStream) -> str:
        return amount(stream_usd_totals(stream_ids=[stream.pk]).get(stream.pk, (Decimal(0), Decimal(0)))[0])

    @admin.display(description="distributed to holders (USD)")
    def distributed_usd(self, stream: RevenueStream) -> str:
        return amount(stream_usd_totals(stream_ids=[stream.pk]).get(stream.pk, (Decimal(0), Decimal(0)))[1])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _events_link(ids: list[int], *, anchor: str) -> str:
    """The revenue events' list filtered to `ids`, or "-" for none."""
    if not ids:
        return "-"
    url = reverse("admin:revenue_revenueevent_changelist")
    return format_html('<a href="{}?id__in={}" id="{}">{} event(s)</a>', url, ",".join(map(str, ids)), anchor, len(ids))


@admin.register(DeliveryBatch)
class DeliveryBatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "deployment", "size", "status", "foreign", "nonce", "mined_tx_hash", "block_number",
                    "submitted_at", "confirmed_at", "finalized_at", "last_error")  # fmt: skip
    list_filter = ("status", "foreign", "deployment")
    # Every signed version: an event in flight names its batch's latest one (its transaction hash), which
    # is no batch's mined_tx_hash until it is mined (the search found nothing for it).
    search_fields = ("mined_tx_hash", "tx_hashes")
    readonly_fields = ("events", "left_out_events")
    change_form_template = "admin/revenue/deliverybatch/change_form.html"

    @admin.display(description="its events")
    def events(self, obj: DeliveryBatch) -> str:
        """The events it carries, as one filtered list of the revenue events (their statuses,
        errors and retry buttons), instead of the bare ids of event_ids."""
        return _events_link([int(pk) for pk in obj.event_ids], anchor="batch-events")

    @admin.display(description="left out of its latest version")
    def left_out_events(self, obj: DeliveryBatch) -> str:
        """The events of the items an earlier version carried and its latest does not: still
        submitted under this batch (that version may be mined) until the version mined is
        known. They were in none of its links: an event page named this batch, the batch's
        events did not list it."""
        ids = [pk for events in items_events(item_ids=map(int, obj.left_out_item_ids)).values() for pk in events]
        return _events_link(ids, anchor="batch-left-out-events")

    def has_abandon_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("revenue.abandon_batch"))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Who may abandon a batch sees the batches (as the events' retry permission does them)."""
        return super().has_view_permission(request, obj) or self.has_abandon_permission(request)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:batch_id>/abandon/", view(self.abandon_view), name="revenue_deliverybatch_abandon"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        batch = self.get_object(request, object_id)
        in_flight = batch is not None and batch.status == DeliveryBatchStatus.SUBMITTED and batch.block_number is None
        context = {**(extra_context or {}), "can_abandon": in_flight and self.has_abandon_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def abandon_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        """GET: what abandoning does and what the chain must show, with a reason to give.
        POST: revenue.staff_actions.delivery_batch_abandon (it checks the chain first)."""
        if not self.has_abandon_permission(request):
            raise PermissionDenied
        batch = get_object_or_404(DeliveryBatch, pk=batch_id)
        page = reverse("admin:revenue_deliverybatch_change", args=[batch.pk])
        reason = request.POST.get("reason", "") if request.method == "POST" else ""
        if request.method == "POST":
            try:
                outcome = _staff_actions().delivery_batch_abandon(
                    batch_id=batch.pk, actor=request.user, reason=reason, via="admin"
                )
            except InvalidInput as invalid:
                problems = (invalid.fields or {}).get("reason") or ["Say why the batch is abandoned."]
                self.message_user(request, " ".join(problems), messages.ERROR)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return HttpResponseRedirect(page)
            else:
                self.message_user(
                    request,
                    f"Batch {batch.pk} abandoned ({outcome.grounds}: {outcome.detail}); "
                    f"{outcome.events_returned} event(s) back to pending.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(page)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Abandon delivery batch {batch.pk}?",
            "opts": self.model._meta,
            "batch": batch,
            "reason": reason,
        }
        return TemplateResponse(request, "admin/revenue/deliverybatch/abandon.html", context)


@admin.register(DeliveryBundle)
class DeliveryBundleAdmin(ReadOnlyAdmin):
    list_display = ("id", "stream", "amount_wei", "created_at")
    list_filter = ("stream",)


@admin.register(ChainDeployment)
class ChainDeploymentAdmin(ReadOnlyAdmin):
    list_display = ("id", "chain_id", "contract_address", "signer_address", "deployed_at", "embedded", "active")
    list_filter = ("active", "embedded")


@admin.register(StaffAction)
class StaffActionAdmin(ReadOnlyAdmin):
    """The audit trail: who did what to which record, when, from which state."""

    list_display = ("at", "actor_username", "action", "target", "from_state", "to_state", "outcome", "via",
                    "reason", "detail", "correlation_id")  # fmt: skip
    list_filter = ("action", "outcome", "via")
    search_fields = ("actor_username", "=target_id", "correlation_id", "reason")
    date_hierarchy = "at"

    @admin.display(description="record", ordering="target_id")
    def target(self, obj: StaffAction) -> str:
        actions = _staff_actions()
        pages = {actions.EVENT: ("admin:revenue_revenueevent_change", "revenue event"),
                 actions.BATCH: ("admin:revenue_deliverybatch_change", "delivery batch")}  # fmt: skip
        if obj.target_type in pages:
            name, label = pages[obj.target_type]
            url = reverse(name, args=[obj.target_id])
            return format_html('<a href="{}">{} {}</a>', url, label, obj.target_id)
        return f"{obj.target_type} {obj.target_id}"
