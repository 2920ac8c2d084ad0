from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.permissions import IsStaff
from core.api.schema import error_responses
from core.errors import InvalidParameter
from core.money import format_amount
from core.text import parse_id, path_id
from revenue.chain.errors import PauseCause
from revenue.delivery.metadata import DeliveryStatus
from revenue.errors import RevenueEventNotFound, RevenueEventNotRetryable
from revenue.models import RevenueEvent
from revenue.reports import onchain_failure_report
from revenue.staff_actions import revenue_events_delivery_retry
from revenue.worker_status import onchain_worker_status


def _nullable(field: type[serializers.Field]) -> serializers.Field:
    return field(allow_null=True)


PAUSE = inline_serializer(
    "OnchainDeliveryPause",
    {
        "cause": serializers.ChoiceField(choices=[c.value for c in PauseCause]),
        "detail": serializers.CharField(),
        "since": serializers.DateTimeField(),
        "last_alert_at": _nullable(serializers.DateTimeField),
    },
    allow_null=True,
    help_text="Why delivery is paused (null while it runs); it resumes by itself once the cause is gone.",
)
FAILURE_REPORT = inline_serializer(
    "OnchainFailureReport",
    {
        "summary": inline_serializer(
            "OnchainFailureSummary",
            {
                "total_failures": serializers.IntegerField(),
                "critical_failures": serializers.IntegerField(),
                "total_holder_share_pending": serializers.CharField(help_text="Decimal string."),
                "period_hours": serializers.IntegerField(),
                "needs_reconciliation": serializers.IntegerField(
                    help_text="Events submitted on chain for too long without a receipt."
                ),
                "delivery_paused": serializers.BooleanField(
                    help_text="Delivery is paused by an operator-level fault (see pause): events wait, unfailed."
                ),
                "pause": PAUSE,
                "events_waiting": serializers.IntegerField(help_text="Events pending or failed (dust included)."),
                "dust_carried": serializers.IntegerField(
                    help_text="Pending events whose share is carried forward until their stream's dust is worth paying."
                ),
                "batches_stuck": serializers.IntegerField(
                    help_text="Batches submitted and not mined for longer than DELIVERY_SUBMITTED_ALERT_SECONDS."
                ),
            },
        ),
        "by_stream": inline_serializer(
            "OnchainFailureStream",
            {
                "stream_id": serializers.IntegerField(),
                "stream_name": serializers.CharField(),
                "count": serializers.IntegerField(),
                "critical": serializers.IntegerField(),
                "total_holder_share": serializers.CharField(),
                "max_retries": serializers.IntegerField(),
                "events": inline_serializer(
                    "OnchainFailureEvent",
                    {
                        "id": serializers.IntegerField(),
                        "holder_share": serializers.CharField(),
                        "description": serializers.CharField(),
                        "created_at": serializers.DateTimeField(),
                        "retry_attempts": serializers.IntegerField(),
                        "status": serializers.ChoiceField(choices=[s.value for s in DeliveryStatus]),
                        "last_error": _nullable(serializers.CharField),
                        "next_retry_at": _nullable(serializers.CharField),
                    },
                    many=True,
                ),
            },
            many=True,
        ),
    },
)
WORKER_STATUS = inline_serializer(
    "OnchainWorkerStatus",
    {
        "enabled": serializers.BooleanField(),
        "last_run_at": _nullable(serializers.DateTimeField),
        "last_success_at": _nullable(serializers.DateTimeField),
        "last_error": _nullable(serializers.CharField),
        "last_error_at": _nullable(serializers.DateTimeField),
        "poll_interval_seconds": serializers.IntegerField(),
        "batch_size": serializers.IntegerField(),
        "max_retry_attempts": serializers.IntegerField(),
        "confirmations": serializers.IntegerField(),
        "counts": inline_serializer(
            "OnchainDeliveryCounts",
            {status.value: serializers.IntegerField() for status in DeliveryStatus},
            help_text="Events by delivery status; the statuses are disjoint and add up to the events.",
        ),
        "paused": PAUSE,
        "resumed_at": _nullable(serializers.DateTimeField),
        "batches_in_flight": serializers.IntegerField(),
        "batches_stuck": serializers.IntegerField(),
        "signer_balance_low": serializers.BooleanField(
            help_text="The signer holds less than gas for DELIVERY_LOW_BALANCE_BATCHES batches (alerted)."
        ),
        "chain": inline_serializer(
            "OnchainChainStatus",
            {
                "connected": serializers.BooleanField(),
                "chain_id": _nullable(serializers.IntegerField),
                "contract_address": _nullable(serializers.CharField),
                "signer_address": _nullable(serializers.CharField),
                "signer_balance_wei": _nullable(serializers.CharField),
                "block_number": _nullable(serializers.IntegerField),
                "finalized_block": _nullable(serializers.IntegerField),
                "items_paid": _nullable(serializers.IntegerField),
                "next_sequence": _nullable(serializers.IntegerField),
            },
        ),
    },
)
RETRY_QUEUED = inline_serializer(
    "RevenueEventRetryQueued", {"id": serializers.IntegerField(), "status": serializers.CharField()}
)


STREAM_ID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 9}
HOURS_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 24 * 366, "default": 24}


def _int_param(request: Request, *names: str, default: int | None, minimum: int, maximum: int) -> int | None:
    # Present, even empty, a value must be an integer in range (as the schema says), under
    # each of its names (an alias out of range is refused, not ignored).
    values = []
    for name in names:
        raw = request.query_params.get(name)
        if raw is None:
            continue
        value = parse_id(raw)
        if value is None or not minimum <= value <= maximum:
            raise InvalidParameter(fields={name: [f"Must be an integer from {minimum} to {maximum}."]})
        values.append(value)
    return values[0] if values else default


def _money(value: Any) -> Any:
    return format_amount(value) if isinstance(value, Decimal) else value


class OnchainFailuresApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        parameters=[
            OpenApiParameter("stream_id", {"type": "integer", "minimum": 0, "maximum": 9}),
            OpenApiParameter(
                "streamId", {"type": "integer", "minimum": 0, "maximum": 9}, description="Alias of stream_id."
            ),
            OpenApiParameter(
                "hours",
                {"type": "integer", "minimum": 1, "maximum": 24 * 366, "default": 24},
                description="Window in hours.",
            ),
        ],
        responses={200: FAILURE_REPORT},
    )
    def get(self, request: Request) -> Response:
        stream_id = _int_param(request, "stream_id", "streamId", default=None, minimum=0, maximum=9)
        hours = _int_param(request, "hours", default=24, minimum=1, maximum=24 * 366)
        assert hours is not None  # noqa: S101  (it has a default)
        report = onchain_failure_report(hours=hours, stream_id=stream_id)
        return Response(
            {
                "summary": {k: _money(v) for k, v in report.summary.items()},
                "by_stream": [
                    {
                        **{k: _money(v) for k, v in stream.items() if k != "events"},
                        "events": [{k: _money(v) for k, v in event.items()} for event in stream["events"]],  # type: ignore[attr-defined]
                    }
                    for stream in report.by_stream
                ],
            }
        )


class OnchainWorkerStatusApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses={200: WORKER_STATUS})
    def get(self, request: Request) -> Response:
        return Response(onchain_worker_status())


class RevenueEventRetryApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        request=None,
        responses={
            202: RETRY_QUEUED,
            **error_responses(409, s409="`event_not_retryable`: only failed or pending events can be queued again."),
        },
    )
    def post(self, request: Request, event_id: str) -> Response:
        event_pk = path_id(event_id, not_found=RevenueEventNotFound)
        if not RevenueEvent.objects.filter(pk=event_pk).exists():
            raise RevenueEventNotFound()
        outcome = revenue_events_delivery_retry(event_ids=[event_pk], actor=request.user, via="api")
        if not outcome.queued:
            raise RevenueEventNotRetryable()
        return Response({"id": int(event_id), "status": "queued"}, status=202)
