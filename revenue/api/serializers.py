"""The staff revenue API's answers, declared: each reads what a revenue selector returns
(revenue.reports, revenue.worker_status). Amounts are decimal strings (format_amount)."""

from __future__ import annotations

from rest_framework import serializers

from core.api.fields import AmountText
from core.api.inputs import KnownFieldsInput
from revenue.chain.errors import PauseCause
from revenue.delivery.metadata import DeliveryStatus


class OnchainDeliveryPauseSerializer(serializers.Serializer):
    # Reads revenue.reports.delivery_pause.

    cause = serializers.ChoiceField(choices=[c.value for c in PauseCause])
    detail = serializers.CharField()
    since = serializers.DateTimeField()
    last_alert_at = serializers.DateTimeField(allow_null=True)


def _pause() -> OnchainDeliveryPauseSerializer:
    return OnchainDeliveryPauseSerializer(
        allow_null=True,
        help_text="Why delivery is paused (null while it runs); it resumes by itself once the cause is gone.",
    )


class OnchainFailureSummarySerializer(serializers.Serializer):
    total_failures = serializers.IntegerField()
    critical_failures = serializers.IntegerField()
    total_holder_share_pending = AmountText(help_text="Decimal string.")
    period_hours = serializers.IntegerField()
    needs_reconciliation = serializers.IntegerField(
        help_text="Events submitted on chain for too long without a receipt."
    )
    delivery_paused = serializers.BooleanField(
        help_text="Delivery is paused by an operator-level fault (see pause): events wait, unfailed."
    )
    pause = _pause()
    stale_pending = serializers.IntegerField(
        help_text="Events pending, not dust, untouched for over 10 minutes (created, sent and returned, re-queued), "
        "whenever they were created: no cycle picked them up."
    )
    held_for_funds = serializers.IntegerField(
        help_text="Events held, whenever created: their share is more than the signer can pay. Each waits, out of "
        "every batch, and is paid by itself once the balance allows; listed among the failures from the moment "
        "it is held."
    )
    events_waiting = serializers.IntegerField(help_text="Events pending or failed (dust and held included).")
    dust_carried = serializers.IntegerField(
        help_text="Pending events whose share is carried forward until their stream's dust is worth paying."
    )
    batches_stuck = serializers.IntegerField(
        help_text="Batches submitted and not mined for longer than DELIVERY_SUBMITTED_ALERT_SECONDS."
    )


class OnchainFailureEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    holder_share = AmountText()
    currency = serializers.CharField(help_text="The holder share's currency: its market's quote asset.")
    description = serializers.CharField()
    created_at = serializers.DateTimeField()
    retry_attempts = serializers.IntegerField()
    status = serializers.ChoiceField(choices=[s.value for s in DeliveryStatus])
    last_error = serializers.CharField(allow_null=True)
    next_retry_at = serializers.CharField(allow_null=True)
    held_cause = serializers.CharField(
        allow_null=True,
        help_text="Why the event is held (insufficient_funds: its share is more than the signer can pay); "
        "null when it is not. last_error says how much against what.",
    )


class OnchainFailureStreamSerializer(serializers.Serializer):
    stream_id = serializers.IntegerField()
    stream_name = serializers.CharField()
    count = serializers.IntegerField()
    critical = serializers.IntegerField()
    total_holder_share = AmountText()
    max_retries = serializers.IntegerField()
    events = OnchainFailureEventSerializer(many=True)


class OnchainFailureReportSerializer(serializers.Serializer):
    # Reads revenue.reports.FailureReport.

    summary = OnchainFailureSummarySerializer()
    by_stream = OnchainFailureStreamSerializer(many=True)


class OnchainDeliveryCountsSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        # One count per status, following the enum.
        return {status.value: serializers.IntegerField() for status in DeliveryStatus}


class OnchainChainStatusSerializer(serializers.Serializer):
    connected = serializers.BooleanField()
    chain_id = serializers.IntegerField(allow_null=True)
    contract_address = serializers.CharField(allow_null=True)
    signer_address = serializers.CharField(allow_null=True)
    signer_balance_wei = serializers.CharField(allow_null=True)
    block_number = serializers.IntegerField(allow_null=True, help_text="Null while the node is unreachable.")
    finalized_block = serializers.IntegerField(allow_null=True, help_text="Null while the node is unreachable.")
    unreachable_since = serializers.DateTimeField(
        allow_null=True,
        help_text="The first cycle of the worker the node did not answer, since it last did; null while it answers.",
    )
    last_seen_at = serializers.DateTimeField(
        allow_null=True, help_text="The last cycle of the worker the node answered (null: never)."
    )
    last_seen_block = serializers.IntegerField(allow_null=True, help_text="The head as of last_seen_at.")
    last_seen_finalized_block = serializers.IntegerField(
        allow_null=True, help_text="The final block as of last_seen_at."
    )
    items_paid = serializers.IntegerField(allow_null=True)
    next_sequence = serializers.IntegerField(allow_null=True)


class BeatStatusSerializer(serializers.Serializer):
    # Reads core.health.beat_report.
    status = serializers.ChoiceField(
        choices=["ok", "stalled", "never", "unknown"],
        help_text="stalled: no periodic task sent for 10 minutes; never: beat has not served this database yet.",
    )
    last_sent_s = serializers.FloatField(allow_null=True, help_text="Seconds since beat last sent a periodic task.")


class OnchainWorkerStatusSerializer(serializers.Serializer):
    # Reads revenue.worker_status.onchain_worker_status.

    enabled = serializers.BooleanField()
    last_run_at = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
    last_error_at = serializers.DateTimeField(allow_null=True)
    poll_interval_seconds = serializers.IntegerField(
        help_text="How often beat re-drives delivery: its schedule in the database (django-celery-beat)."
    )
    redrive_scheduled = serializers.BooleanField(
        help_text="Beat's re-drive task exists and is enabled. False: retries and confirmations wait for new events."
    )
    batch_size = serializers.IntegerField()
    max_retry_attempts = serializers.IntegerField()
    confirmations = serializers.IntegerField()
    counts = OnchainDeliveryCountsSerializer(
        help_text="Events by delivery status; the statuses are disjoint and add up to the events."
    )
    stale_pending = serializers.IntegerField(
        help_text="Of the pending events, those untouched for over 10 minutes (not dust): as the failure report counts."
    )
    held_for_funds = serializers.IntegerField(
        help_text="Events held: their share is more than the signer can pay (as the failure report counts them)."
    )
    paused = _pause()
    resumed_at = serializers.DateTimeField(allow_null=True)
    batches_in_flight = serializers.IntegerField()
    batches_stuck = serializers.IntegerField()
    signer_balance_low = serializers.BooleanField(
        help_text="The signer holds less than gas for DELIVERY_LOW_BALANCE_BATCHES batches (alerted)."
    )
    chain = OnchainChainStatusSerializer()
    beat = BeatStatusSerializer(
        help_text="Whether beat sends (trades keep the delivery heartbeat fresh without it: nothing retried or swept)."
    )


class RevenueEventRetryQueuedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()


class RevenueEventRetryRequestSerializer(KnownFieldsInput):
    # The body is optional: a retry posted with none (as before) records no reason.
    reason = serializers.CharField(
        required=False,
        max_length=500,
        help_text="Why the event is queued again (optional; kept in the audit trail). Blank is refused: leave it out.",
    )


class DeliveryBatchAbandonRequestSerializer(KnownFieldsInput):
    reason = serializers.CharField(max_length=500, help_text="Why the batch is abandoned (kept in the audit trail).")


class DeliveryBatchAbandonedSerializer(serializers.Serializer):
    # Reads revenue.staff_actions.AbandonOutcome.
    id = serializers.IntegerField(source="batch_id")
    status = serializers.CharField(default="abandoned")
    grounds = serializers.CharField(help_text="nonce_used or tx_gone: what the chain showed (docs/delivery.md).")
    detail = serializers.CharField()
    events_returned = serializers.IntegerField(help_text="Events back to pending, to be sent in a new batch.")
