from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.params import query_value
from core.api.permissions import IsStaff, staff_permission
from core.api.schema import error_responses
from core.errors import InvalidParameter
from core.text import parse_id, path_id
from revenue.api.serializers import (
    DeliveryBatchAbandonedSerializer,
    DeliveryBatchAbandonRequestSerializer,
    OnchainFailureReportSerializer,
    OnchainWorkerStatusSerializer,
    RevenueEventRetryQueuedSerializer,
    RevenueEventRetryRequestSerializer,
)
from revenue.errors import DeliveryBatchNotFound, RevenueEventNotFound, RevenueEventNotRetryable
from revenue.reports import onchain_failure_report
from revenue.selectors import revenue_event_exists
from revenue.staff_actions import delivery_batch_abandon, revenue_events_delivery_retry
from revenue.worker_status import onchain_worker_status


def _int_param(request: Request, *names: str, default: int | None, minimum: int, maximum: int) -> int | None:
    # Present, even empty, a value must be an integer in range (as the schema says), under
    # each of its names (an alias out of range is refused, not ignored); two names with two
    # values are refused too (?stream_id=1&streamId=2 reported stream 1 without a word).
    values = []
    for name in names:
        raw = query_value(request, name)
        if raw is None:
            continue
        value = parse_id(raw)
        if value is None or not minimum <= value <= maximum:
            raise InvalidParameter(fields={name: [f"Must be an integer from {minimum} to {maximum}."]})
        values.append(value)
    if len(set(values)) > 1:  # the one parameter given twice, under its two names
        raise InvalidParameter(fields={name: [f"Give one of {', '.join(names)}, or the same value."] for name in names})
    return values[0] if values else default


class CanRetryDelivery(BasePermission):
    """revenue.retry_delivery, as the admin's retry asks (docs/operations.md, "The admin
    desk"): staff without it read the reports but queue nothing (403)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user.has_perm("revenue.retry_delivery"))


# The report and the worker status show revenue events: the admin's pages of them ask for
# revenue.view_revenueevent, or revenue.retry_delivery (who retries sees what they retry:
# docs/operations.md, "The admin desk"), so does the API.
VIEW_EVENTS = staff_permission("revenue.view_revenueevent", "revenue.retry_delivery")


class OnchainFailuresApi(APIView):
    permission_classes = [VIEW_EVENTS]

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
        responses={200: OnchainFailureReportSerializer},
    )
    def get(self, request: Request) -> Response:
        stream_id = _int_param(request, "stream_id", "streamId", default=None, minimum=0, maximum=9)
        hours = _int_param(request, "hours", default=24, minimum=1, maximum=24 * 366)
        assert hours is not None  # noqa: S101  (it has a default)
        report = onchain_failure_report(hours=hours, stream_id=stream_id)
        return Response(OnchainFailureReportSerializer(report).data)


class OnchainWorkerStatusApi(APIView):
    permission_classes = [VIEW_EVENTS]

    @extend_schema(responses={200: OnchainWorkerStatusSerializer})
    def get(self, request: Request) -> Response:
        return Response(OnchainWorkerStatusSerializer(onchain_worker_status()).data)


class RevenueEventRetryApi(APIView):
    permission_classes = [IsStaff, CanRetryDelivery]

    @extend_schema(
        request=RevenueEventRetryRequestSerializer,
        responses={
            202: RevenueEventRetryQueuedSerializer,
            **error_responses(
                400,
                409,
                s400="`validation_error`: `reason` blank, longer than 500 characters or holding control characters, "
                "or a member the body does not take; nothing was queued.",
                s409="`event_not_retryable`: only failed or pending events can be queued again.",
            ),
        },
    )
    def post(self, request: Request, event_id: str) -> Response:
        event_pk = path_id(event_id, not_found=RevenueEventNotFound)
        body = RevenueEventRetryRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not revenue_event_exists(event_id=event_pk):
            raise RevenueEventNotFound()
        outcome = revenue_events_delivery_retry(
            event_ids=[event_pk], actor=request.user, via="api", reason=body.validated_data.get("reason")
        )
        if not outcome.queued:
            raise RevenueEventNotRetryable(f"Event {event_pk} was not queued: {outcome.message()}")
        return Response(RevenueEventRetryQueuedSerializer({"id": event_pk, "status": "queued"}).data, status=202)


class DeliveryBatchAbandonApi(APIView):
    """A batch stuck in `submitted` given up on, once the chain shows no version of it can
    pay (docs/delivery.md, "Abandoning a stuck batch"); the admin's button asks the same."""

    permission_classes = [staff_permission("revenue.abandon_batch")]

    @extend_schema(
        request=DeliveryBatchAbandonRequestSerializer,
        responses={
            200: DeliveryBatchAbandonedSerializer,
            **error_responses(
                400,
                404,
                409,
                503,
                s409="`batch_not_abandonable`: the chain or the batch's state does not allow it (the message says "
                "what was found); `delivery_busy`: the delivery worker is in a cycle, try again.",
                s503="`chain_unavailable`: the node did not answer; nothing was changed.",
            ),
        },
    )
    def post(self, request: Request, batch_id: str) -> Response:
        batch_pk = path_id(batch_id, not_found=DeliveryBatchNotFound)
        body = DeliveryBatchAbandonRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        outcome = delivery_batch_abandon(
            batch_id=batch_pk, actor=request.user, reason=body.validated_data["reason"], via="api"
        )
        return Response(DeliveryBatchAbandonedSerializer(outcome).data)
