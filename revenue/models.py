"""Revenue streams, revenue events and the post-trade outbox."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from core.fields import MoneyField


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
