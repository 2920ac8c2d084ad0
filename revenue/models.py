"""Revenue streams, revenue events and the post-trade outbox."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT

from core.fields import MoneyField


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
            models.CheckConstraint(
                condition=Q(net_amount=F("holder_share") + F("reserve_share")), name="revenue_event_split_exact"
            ),
        ]
        indexes = [
            models.Index(KT("metadata__onChainDeliveryStatus"), "id", name="revenue_event_delivery_status"),
            models.Index(fields=["created_at"], name="revenue_event_created"),
        ]

    def __str__(self) -> str:
        return f"revenue event {self.pk} ({self.source_type}:{self.source_id})"


class PostTradeJobStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"


class PostTradeJob(models.Model):
    """Transactional outbox: written in the trade's own transaction, turned into revenue
    events by a Celery task after commit, or by the periodic sweep if that task never ran."""

    trade = models.OneToOneField("orders.Trade", on_delete=models.PROTECT, related_name="post_trade_job")
    status = models.CharField(max_length=8, choices=PostTradeJobStatus.choices, default=PostTradeJobStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["created_at", "id"], condition=Q(status="pending"), name="post_trade_job_pending"),
        ]

    def __str__(self) -> str:
        return f"post-trade job {self.pk} for trade {self.trade_id} ({self.status})"
