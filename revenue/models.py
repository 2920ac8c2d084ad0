"""Revenue streams, revenue events and their on-chain delivery. The trades revenue is
collected from come from the outbox orders owns (orders.models.TradeOutbox)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from core.fields import SUM_MAX_DIGITS, MoneyField, MoneySumEquals
from revenue.delivery.metadata import (
    ATTENTION_STATUSES,
    WAITING_STATUSES,
    DeliveryStatus,
    carried,
    held,
    not_carried,
    status_expression,
    status_in,
)


class RevenueStream(models.Model):
    """One source of platform revenue (ids 0-9 are fixed). `collected` and
    `distributed` are maintained in the same transaction as the events they sum."""

    id = models.PositiveSmallIntegerField(primary_key=True)
    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True, default="")
    # Sums wider than an amount (core.fields.SUM_MAX_DIGITS): every currency's events added.
    collected = MoneyField(default=0, max_digits=SUM_MAX_DIGITS)
    # Holder share confirmed on-chain, in each event's own currency added together (the
    # delivery's books: USDT and ETH shares alike). Not a dollar figure: the flywheel sums
    # the delivered events per currency instead (flywheel.selectors.stream_figures_list).
    distributed = MoneyField(default=0, max_digits=SUM_MAX_DIGITS)
    target_monthly = MoneyField(default=0, validators=[MinValueValidator(0)])  # staff set it (admin)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(collected__gte=0) & Q(distributed__gte=0), name="stream_totals_non_negative"
            ),
            models.CheckConstraint(condition=Q(target_monthly__gte=0), name="stream_target_non_negative"),
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
    # Source details and the delivery state of the holder share: its keys belong to
    # revenue.delivery.metadata; updated in SQL, key by key, never read-modify-write.
    metadata = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        # Financial records are read-only in the admin; staff with this permission may queue
        # an event's delivery again (revenue.staff_actions, recorded as a StaffAction).
        permissions = [("retry_delivery", "Can queue a revenue event's delivery again")]
        constraints = [
            models.UniqueConstraint(fields=["source_type", "source_id"], name="revenue_event_unique_source"),
            models.CheckConstraint(condition=Q(gross_amount__gt=0), name="revenue_event_gross_positive"),
            models.CheckConstraint(
                condition=Q(holder_share__gte=0) & Q(reserve_share__gte=0), name="revenue_event_shares_non_negative"
            ),
            # net == holder + reserve, exactly on both backends (on SQLite, whose arithmetic
            # is floating point, digit group by digit group: core.fields.MoneySumEquals).
            models.CheckConstraint(
                condition=MoneySumEquals(F("net_amount"), F("holder_share"), F("reserve_share")),
                name="revenue_event_split_exact",
            ),
        ]
        indexes = [
            models.Index(status_expression(), "id", name="revenue_event_delivery_status"),
            models.Index(fields=["created_at"], name="revenue_event_created"),
            # Re-drive scans (pending, or failed and due; oldest id first) walk this small
            # partial index in id order and stop after one batch, however many delivered
            # events there are (docs/performance.md). Dust carried forward is not in it.
            models.Index(
                fields=["id"],
                condition=status_in(*WAITING_STATUSES) & not_carried(),
                name="revenue_event_redrive",
            ),
            # The failure report (revenue.reports) reads the events that need attention of
            # the last hours by creation time: a few thousand entries, not every event of
            # the period (docs/performance.md, "Scans at scale").
            models.Index(
                fields=["created_at"],
                condition=status_in(*ATTENTION_STATUSES),
                name="revenue_event_attention",
            ),
            # Dust carried forward, per stream, until its bundle is worth sending.
            models.Index(
                fields=["stream", "id"],
                condition=status_in(DeliveryStatus.PENDING) & carried(),
                name="revenue_event_carried",
            ),
            # Events held: their share is more than the signer can pay (revenue.delivery.
            # broadcast); every batch looks here for those that fit again.
            models.Index(
                fields=["id"],
                condition=status_in(*WAITING_STATUSES) & held(),
                name="revenue_event_held",
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
    # The reserve's logs are read up to this block; its hash tells whether a reorg
    # changed anything at or below it since (then the scan restarts at the final block).
    scanned_block = models.PositiveBigIntegerField(null=True, blank=True)
    scanned_block_hash = models.CharField(max_length=66, blank=True, default="", db_default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id"], condition=Q(active=True), name="chain_deployment_one_active"),
            models.UniqueConstraint(fields=["chain_id", "contract_address"], name="chain_deployment_unique_contract"),
        ]

    def __str__(self) -> str:
        return f"HolderReserve {self.contract_address} on chain {self.chain_id}"


class DeliveryBatchStatus(models.TextChoices):
    SUBMITTED = "submitted"  # signed and persisted; maybe broadcast, maybe mined, not yet confirmed
    CONFIRMED = "confirmed"  # mined OK with CHAIN_CONFIRMATIONS blocks (re-checked until final)
    FAILED = "failed"  # definitively not delivered (reverted, or refused by the node): events retry
    # Carries nothing any more: its deployment was replaced before it confirmed, every item
    # was paid by other transactions, or (foreign) it left the canonical chain.
    SUPERSEDED = "superseded"
    # Given up on by staff once the chain showed that no version of it is mined or pays
    # anything (revenue.delivery.abandon): its events went back to pending. A version
    # mined after all is recorded by the scan like any other (back to submitted).
    ABANDONED = "abandoned"


class DeliveryBatch(models.Model):
    """One `deliver(item_ids, stream_ids, amounts)` transaction, with all its re-signed
    versions (same nonce with higher fees, or rebuilt at another nonce). The contract pays
    an item id once whatever transaction carries it, so resending is always safe; which
    items a mined transaction paid is read from its logs (`Delivered`, `Refused`)."""

    deployment = models.ForeignKey(ChainDeployment, on_delete=models.PROTECT, related_name="batches")
    size = models.PositiveIntegerField()  # items
    # Parallel lists, one entry per on-chain item; wei amounts as strings (they exceed 2**53).
    item_ids = models.JSONField(
        default=list, db_default=[]
    )  # a revenue event's id, or BUNDLE_ITEM_BASE + a bundle's id
    stream_ids = models.JSONField(default=list)
    amounts_wei = models.JSONField(default=list)
    event_ids = models.JSONField(default=list)  # every revenue event the items carry (bundles expanded)
    value_wei = models.CharField(max_length=80)
    eth_usd_price = MoneyField(null=True, blank=True)
    nonce = models.PositiveBigIntegerField()
    gas = models.PositiveBigIntegerField()
    max_fee_per_gas = models.PositiveBigIntegerField()
    max_priority_fee_per_gas = models.PositiveBigIntegerField()
    signed_raw_tx = models.TextField(blank=True, default="")  # the latest signed bytes, hex; never a key
    tx_hashes = models.JSONField(default=list)  # every signed version, oldest first
    mined_tx_hash = models.CharField(max_length=66, blank=True, default="")
    status = models.CharField(max_length=10, choices=DeliveryBatchStatus.choices, default=DeliveryBatchStatus.SUBMITTED)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)  # set while mined in the canonical chain
    block_hash = models.CharField(max_length=66, blank=True, default="", db_default="")
    refused_item_ids = models.JSONField(default=list, db_default=[])  # items its mined transaction found paid already
    # Items an earlier version of it carried that its latest does not (left out of a version
    # re-signed at its nonce for funds): the earlier version may still be mined, so their events
    # stay submitted under this batch until the version mined is known (its confirmation):
    # paid by it, or back to pending (revenue.delivery.transitions).
    left_out_item_ids = models.JSONField(default=list, db_default=[])
    submitted_block = models.PositiveBigIntegerField(default=0)  # chain head when it was built
    # Chain head when its latest version was sent: replaced for being slow only once blocks
    # were made since without it (a node whose head stalls gains nothing from higher fees).
    broadcast_block = models.PositiveBigIntegerField(default=0, db_default=0)
    foreign = models.BooleanField(default=False)  # found in the contract's logs, not sent by this platform
    submitted_at = models.DateTimeField()
    last_broadcast_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)  # its block is final: no more re-checks
    alerted_at = models.DateTimeField(null=True, blank=True)  # submitted too long: alerted once
    last_error = models.TextField(blank=True, default="")

    class Meta:
        verbose_name_plural = "delivery batches"
        # Staff with this permission may abandon a batch stuck in `submitted`, once the chain
        # shows no version of it can pay (revenue.staff_actions.delivery_batch_abandon).
        permissions = [("abandon_batch", "Can abandon a delivery batch stuck in submitted")]
        constraints = [
            models.CheckConstraint(condition=Q(size__gt=0), name="delivery_batch_not_empty"),
        ]
        indexes = [
            models.Index(fields=["deployment", "status", "id"], name="delivery_batch_state"),
        ]

    def __str__(self) -> str:
        return f"delivery batch {self.pk} ({self.size} items, nonce {self.nonce}, {self.status})"


class DeliveryBundle(models.Model):
    """Dust carried forward: holder shares of one stream too small to pay one by one,
    paid on-chain as one item (id BUNDLE_ITEM_BASE + pk) once together they are worth it.
    Fixed when formed: its events and amount never change, so resending it is safe."""

    stream = models.ForeignKey(RevenueStream, on_delete=models.PROTECT, related_name="bundles")
    event_ids = models.JSONField(default=list)
    amount_wei = models.CharField(max_length=80)  # the sum of its events' amounts in wei
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"dust bundle {self.pk} of stream {self.stream_id} ({len(self.event_ids)} events)"


class DeliveryHeartbeat(models.Model):
    """Singleton (id 1): the delivery worker's state, written by every cycle, for the
    worker-status view: its last run, the chain it saw, and whether delivery is paused."""

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
    finalized_block = models.PositiveBigIntegerField(null=True, blank=True)
    # The node as the worker saw it: the last cycle it answered (block_number and
    # finalized_block are as of then), and the first cycle it did not answer since (None
    # while it answers). Staff read "unreachable since", not the last numbers as current.
    chain_seen_at = models.DateTimeField(null=True, blank=True)
    chain_lost_at = models.DateTimeField(null=True, blank=True)
    items_paid = models.PositiveBigIntegerField(null=True, blank=True)  # the reserve's own count
    signer_address = models.CharField(max_length=42, blank=True, default="")
    signer_balance_wei = models.CharField(max_length=80, blank=True, default="")
    contract_address = models.CharField(max_length=42, blank=True, default="")
    # Delivery paused by an operator-level fault (revenue.chain.errors.PauseCause; "" = running).
    pause_cause = models.CharField(max_length=32, blank=True, default="", db_default="")
    pause_detail = models.TextField(blank=True, default="", db_default="")
    paused_since = models.DateTimeField(null=True, blank=True)
    pause_alerted_at = models.DateTimeField(null=True, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    low_balance_alerted_at = models.DateTimeField(null=True, blank=True)  # None: balance not low

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="delivery_heartbeat_singleton")]

    def __str__(self) -> str:
        return f"delivery heartbeat (last run {self.last_run_at})"


class StaffActionKind(models.TextChoices):
    DELIVERY_RETRY = "delivery_retry", "Delivery queued again"
    BATCH_ABANDON = "batch_abandon", "Delivery batch abandoned"


class StaffActionOutcome(models.TextChoices):
    DONE = "done", "done"
    SKIPPED = "skipped", "skipped"
    REFUSED = "refused", "refused"  # the checks said no (an abandonment the chain does not allow)


class StaffAction(models.Model):
    """The audit trail of what staff did to financial records (revenue.staff_actions):
    who, when, what, to which record, from which state to which, through which door.
    Append-only: written by the services, read-only in the admin."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", db_constraint=True
    )
    actor_username = models.CharField(max_length=150)  # kept if the account is renamed or removed
    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=32, choices=StaffActionKind.choices)
    target_type = models.CharField(max_length=32)
    target_id = models.BigIntegerField()
    from_state = models.CharField(max_length=32)
    to_state = models.CharField(max_length=32)
    outcome = models.CharField(max_length=16, choices=StaffActionOutcome.choices)
    via = models.CharField(max_length=16)  # "admin", "api"
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField(
        blank=True, default="", db_default=""
    )  # the staff member's own words (an abandonment's why)
    detail = models.TextField(blank=True, default="", db_default="")  # what the checks found (the chain's evidence)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id", "at"], name="staff_action_target")]

    def __str__(self) -> str:
        return f"{self.actor_username} {self.action} {self.target_type} {self.target_id} at {self.at:%Y-%m-%d %H:%M:%S}"
