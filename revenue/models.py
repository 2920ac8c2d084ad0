"""Revenue streams, revenue events and their on-chain delivery. The trades revenue is
collected from come from the outbox orders owns (orders.models.TradeOutbox)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q, Value
from django.db.models.fields.json import KT

from core.fields import MoneyField

HALF_SATOSHI = Value(Decimal("0.000000005"))


class RevenueStream(models.Model):
    """One source of platform revenue (ids 0-9 are fixed). `collected` and
    `distributed` are maintained in the same transaction as the events they sum."""

    id = models.PositiveSmallIntegerField(primary_key=True)
    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True, default="")
    collected = MoneyField(default=0)
    distributed = MoneyField(default=0)  # holder share confirmed on-chain
    target_monthly = MoneyField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(collected__gte=0) & Q(distributed__gte=0), name="stream_totals_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id}: {self.name}"


class RevenueEvent(models.Model):
    stream = models.ForeignKey(RevenueStream, on_delete=models.PROTECT, related_name="events")
    source_type = models.CharField(max_length=32)
    source_id = models.CharField(max_length=64)
    currency = models.CharField(max_length=16)
    gross_amount = MoneyField()
    net_amount = MoneyField()
    holder_share = MoneyField()
    reserve_share = MoneyField()
    description = models.CharField(max_length=255, blank=True, default="")
    # Delivery state of the holder share (timestamp, streamName, onChainDeliveryStatus,
    # txHash, nonce, retryAttempts, ...): updated in SQL, key by key, never read-modify-write.
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_type", "source_id"], name="revenue_event_unique_source"),
            models.CheckConstraint(condition=Q(gross_amount__gt=0), name="revenue_event_gross_positive"),
            models.CheckConstraint(
                condition=Q(holder_share__gte=0) & Q(reserve_share__gte=0), name="revenue_event_shares_non_negative"
            ),
            # net == holder + reserve. Amounts are whole satoshis, so "within half a satoshi"
            # is exact equality on PostgreSQL's NUMERIC; the margin only absorbs SQLite's
            # floating-point arithmetic in CHECK expressions.
            models.CheckConstraint(
                condition=Q(net_amount__gte=F("holder_share") + F("reserve_share") - HALF_SATOSHI)
                & Q(net_amount__lte=F("holder_share") + F("reserve_share") + HALF_SATOSHI),
                name="revenue_event_split_exact",
            ),
        ]
        indexes = [
            models.Index(KT("metadata__onChainDeliveryStatus"), "id", name="revenue_event_delivery_status"),
            models.Index(fields=["created_at"], name="revenue_event_created"),
            # Re-drive scans (pending, or failed and due; oldest id first) walk this small
            # partial index in id order and stop after one batch, however many delivered
            # events there are (docs/performance.md).
            models.Index(
                fields=["id"],
                condition=Q(metadata__onChainDeliveryStatus__in=["pending", "failed"]),
                name="revenue_event_redrive",
            ),
        ]

    def __str__(self) -> str:
        return f"revenue event {self.pk} ({self.source_type}:{self.source_id})"


# --- on-chain delivery of the holder share (docs/delivery.md) ------------------------------


class ChainDeployment(models.Model):
    """One HolderReserve contract the platform delivers to. At most one is active per chain:
    a new deployment (the embedded chain restarts empty with every worker process, or
    `manage.py chain_deploy`) supersedes the previous one."""

    chain_id = models.PositiveBigIntegerField()
    contract_address = models.CharField(max_length=42)
    signer_address = models.CharField(max_length=42)
    deployed_block = models.PositiveBigIntegerField(default=0)
    deployed_at = models.DateTimeField()
    embedded = models.BooleanField(default=False)  # the in-process chain of a worker process
    active = models.BooleanField(default=True)
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id"], condition=Q(active=True), name="chain_deployment_one_active"),
            models.UniqueConstraint(fields=["chain_id", "contract_address"], name="chain_deployment_unique_contract"),
        ]

    def __str__(self) -> str:
        return f"HolderReserve {self.contract_address} on chain {self.chain_id}"


class DeliveryBatchStatus(models.TextChoices):
    SUBMITTED = "submitted"  # signed and persisted; maybe broadcast, maybe mined, not yet final
    CONFIRMED = "confirmed"  # mined OK with CHAIN_CONFIRMATIONS blocks: its events are delivered
    FAILED = "failed"  # definitively not delivered (reverted, or refused by the node): events retry
    SUPERSEDED = "superseded"  # its deployment was replaced before it confirmed: events back to pending


LIVE_BATCH_STATUSES = (DeliveryBatchStatus.SUBMITTED, DeliveryBatchStatus.CONFIRMED)


class DeliveryBatch(models.Model):
    """One `deliver(first_sequence, ...)` call: the events it carries keep their sequence
    numbers for as long as the batch is live, which is what makes resending safe."""

    deployment = models.ForeignKey(ChainDeployment, on_delete=models.PROTECT, related_name="batches")
    first_sequence = models.PositiveBigIntegerField()
    size = models.PositiveIntegerField()
    # Parallel lists in sequence order; wei amounts as strings (they exceed 2**53).
    event_ids = models.JSONField(default=list)
    stream_ids = models.JSONField(default=list)
    amounts_wei = models.JSONField(default=list)
    value_wei = models.CharField(max_length=80)
    eth_usd_price = MoneyField(null=True, blank=True)
    nonce = models.PositiveBigIntegerField()
    gas = models.PositiveBigIntegerField()
    max_fee_per_gas = models.PositiveBigIntegerField()
    max_priority_fee_per_gas = models.PositiveBigIntegerField()
    signed_raw_tx = models.TextField(blank=True, default="")  # the latest signed bytes, hex; never a key
    tx_hashes = models.JSONField(default=list)  # every broadcast, replacements included, oldest first
    mined_tx_hash = models.CharField(max_length=66, blank=True, default="")
    status = models.CharField(max_length=10, choices=DeliveryBatchStatus.choices, default=DeliveryBatchStatus.SUBMITTED)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)  # set while mined OK
    submitted_block = models.PositiveBigIntegerField(default=0)  # chain head when it was built
    foreign = models.BooleanField(default=False)  # found in the contract's logs, not sent by this platform
    submitted_at = models.DateTimeField()
    last_broadcast_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "first_sequence"],
                condition=Q(status__in=["submitted", "confirmed"]),
                name="delivery_batch_live_sequence_unique",
            ),
            models.CheckConstraint(condition=Q(size__gt=0), name="delivery_batch_not_empty"),
        ]
        indexes = [
            models.Index(fields=["deployment", "status", "first_sequence"], name="delivery_batch_state"),
        ]

    def __str__(self) -> str:
        return f"delivery batch {self.pk} (sequence {self.first_sequence}+{self.size}, {self.status})"

    @property
    def end_sequence(self) -> int:
        return self.first_sequence + self.size


class DeliveryHeartbeat(models.Model):
    """Singleton (id 1) written at the end of every delivery cycle, for the worker-status view."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_task = models.CharField(max_length=32, blank=True, default="")
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_result = models.JSONField(default=dict)
    connected = models.BooleanField(default=False)
    chain_id = models.PositiveBigIntegerField(null=True, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    next_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    signer_address = models.CharField(max_length=42, blank=True, default="")
    signer_balance_wei = models.CharField(max_length=80, blank=True, default="")
    contract_address = models.CharField(max_length=42, blank=True, default="")

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="delivery_heartbeat_singleton")]

    def __str__(self) -> str:
        return f"delivery heartbeat (last run {self.last_run_at})"
