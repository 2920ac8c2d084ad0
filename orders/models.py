"""Assets, markets, the wallet ledger, orders, their events and trades.

Invariants live in the database as well as in the services: non-negative balances,
locked within balance, filled within quantity, terminal orders hold no funds,
one client order id per user."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from core.fields import SUM_MAX_DIGITS, MoneyField
from core.text import REASON_MAX_LENGTH
from orders.engine.types import (
    LIVE_STATUSES,
    RESTING_STATUSES,
    TERMINAL_STATUSES,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

__all__ = [
    "LIVE_STATUSES",
    "RESTING_STATUSES",
    "TERMINAL_STATUSES",
    "Asset",
    "Deposit",
    "Market",
    "Order",
    "OrderEvent",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "SelfTradePrevention",
    "TimeInForce",
    "Trade",
    "TradeOutbox",
    "TradeOutboxStatus",
    "Wallet",
    "choices",
]


class Asset(models.Model):
    symbol = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=64)

    class Meta:
        ordering = ["symbol"]

    def __str__(self) -> str:
        return self.symbol


class Market(models.Model):
    symbol = models.CharField(max_length=33, unique=True)
    base = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="base_markets")
    quote = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="quote_markets")
    price_tick = MoneyField()
    quantity_step = MoneyField()
    min_quantity = MoneyField()
    reference_price = MoneyField()
    last_price = MoneyField(null=True, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(price_tick__gt=0), name="market_price_tick_positive"),
            models.CheckConstraint(condition=Q(quantity_step__gt=0), name="market_quantity_step_positive"),
            models.CheckConstraint(condition=Q(min_quantity__gt=0), name="market_min_quantity_positive"),
            models.CheckConstraint(condition=Q(reference_price__gt=0), name="market_reference_price_positive"),
            models.CheckConstraint(condition=~Q(base=F("quote")), name="market_base_differs_from_quote"),
        ]

    def __str__(self) -> str:
        return self.symbol


class Wallet(models.Model):
    """One asset balance of one account. System accounts (house, fee account) keep one
    sub-wallet per market (`bucket` = market id) so that markets never wait on a shared
    row; traders use bucket 0."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="wallets")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="wallets")
    bucket = models.PositiveIntegerField(default=0)
    balance = MoneyField(default=0)
    locked = MoneyField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "asset", "bucket"], name="wallet_unique_per_user_asset_bucket"),
            models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_non_negative"),
            models.CheckConstraint(
                condition=Q(locked__gte=0) & Q(locked__lte=F("balance")), name="wallet_locked_within_balance"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.asset_id}:{self.bucket}"

    @property
    def available(self) -> Decimal:
        return self.balance - self.locked


DEPOSIT_REFERENCE_MAX_LENGTH = 64


class Deposit(models.Model):
    """Money entering the ledger. For every asset: sum(deposits) == sum(wallet balances)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deposits")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="deposits")
    bucket = models.PositiveIntegerField(default=0)
    amount = MoneyField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The staff credit's idempotency key (its `Idempotency-Key`, the admin form's token, the
    # command's --reference): sent again, the credit is answered, not made twice.
    reference = models.CharField(max_length=DEPOSIT_REFERENCE_MAX_LENGTH, blank=True, db_default="")
    # Why staff credited it, as they said (the audit trail's "why"; core.text.staff_reason_clean).
    reason = models.CharField(max_length=REASON_MAX_LENGTH, blank=True, db_default="")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="deposit_amount_positive"),
            models.UniqueConstraint(fields=["reference"], condition=~Q(reference=""), name="deposit_reference_unique"),
        ]

    def __str__(self) -> str:
        return f"deposit {self.amount} {self.asset_id} to {self.user_id}"


# One vocabulary: the engine's enums (orders.engine.types), reused by the columns, the
# forms and the serializers.
OrderSide = Side


def choices(enum: type[StrEnum]) -> list[tuple[str, str]]:
    """Django choices of an engine enum, labelled as TextChoices would label them."""
    return [(member.value, member.name.replace("_", " ").title()) for member in enum]


class Order(models.Model):
    # No index of its own: order_user_recent leads with it (an index less to maintain on
    # every placement).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders", db_index=False)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=choices(OrderSide))
    type = models.CharField(max_length=12, choices=choices(OrderType))
    time_in_force = models.CharField(max_length=3, choices=choices(TimeInForce))
    stp = models.CharField(max_length=12, choices=choices(SelfTradePrevention), default=SelfTradePrevention.SKIP)
    price = MoneyField(null=True, blank=True)
    stop_price = MoneyField(null=True, blank=True)
    quantity = MoneyField()
    filled_quantity = MoneyField(default=0)
    # Sums over the fills, wider than an amount (core.fields.SUM_MAX_DIGITS).
    quote_filled = MoneyField(default=0, max_digits=SUM_MAX_DIGITS)  # sum of price x quantity
    fee_paid = MoneyField(default=0, max_digits=SUM_MAX_DIGITS)
    # Funds still reserved for this order (quote for buys, base for sells).
    locked_amount = MoneyField(default=0)
    status = models.CharField(max_length=16, choices=choices(OrderStatus))
    # NULL, not "": the contract distinguishes "no reason" / "no client id" (and the
    # per-user uniqueness of client ids applies only where one was given).
    status_reason = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    client_order_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    triggered_at = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0) & Q(filled_quantity__lte=F("quantity")),
                name="order_filled_within_quantity",
            ),
            models.CheckConstraint(condition=Q(locked_amount__gte=0), name="order_locked_non_negative"),
            models.CheckConstraint(condition=Q(fee_paid__gte=0), name="order_fee_non_negative"),
            models.CheckConstraint(condition=Q(status__in=[s.value for s in OrderStatus]), name="order_status_known"),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in LIVE_STATUSES]) | Q(locked_amount=0),
                name="order_terminal_holds_no_funds",
            ),
            models.CheckConstraint(
                condition=~Q(status=OrderStatus.FILLED) | Q(filled_quantity=F("quantity")),
                name="order_filled_means_complete",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=[OrderStatus.OPEN, OrderStatus.PENDING_TRIGGER]) | Q(filled_quantity=0),
                name="order_open_means_unfilled",
            ),
            models.CheckConstraint(
                condition=~Q(status=OrderStatus.PARTIALLY_FILLED)
                | (Q(filled_quantity__gt=0) & Q(filled_quantity__lt=F("quantity")) & Q(time_in_force=TimeInForce.GTC)),
                name="order_partial_rests_only_gtc",
            ),
            # What the engine guarantees, refused by the database too (tests/orders/invariants.py
            # checks the same after every operation).
            models.CheckConstraint(
                condition=~Q(status__in=[s.value for s in RESTING_STATUSES])
                | (Q(type=OrderType.LIMIT) & Q(time_in_force=TimeInForce.GTC)),
                name="order_rests_only_gtc_limit",
            ),
            models.CheckConstraint(
                condition=~Q(time_in_force=TimeInForce.FOK) | Q(filled_quantity=0) | Q(filled_quantity=F("quantity")),
                name="order_fok_all_or_nothing",
            ),
            models.CheckConstraint(
                condition=~Q(status=OrderStatus.PENDING_TRIGGER)
                | (Q(type__in=[OrderType.STOP_LOSS, OrderType.TAKE_PROFIT]) & Q(triggered_at__isnull=True)),
                name="order_pending_only_untriggered_stops",
            ),
            models.CheckConstraint(condition=Q(side__in=[s.value for s in OrderSide]), name="order_side_known"),
            models.CheckConstraint(condition=Q(type__in=[t.value for t in OrderType]), name="order_type_known"),
            models.CheckConstraint(
                condition=Q(time_in_force__in=[t.value for t in TimeInForce]), name="order_time_in_force_known"
            ),
            models.CheckConstraint(condition=Q(stp__in=[s.value for s in SelfTradePrevention]), name="order_stp_known"),
            # The client id first: the same uniqueness, and the index also finds a client id
            # without its user (the admin's search, a support ticket quoting one).
            models.UniqueConstraint(
                fields=["client_order_id", "user"],
                condition=Q(client_order_id__isnull=False),
                name="order_client_order_id_unique_per_user",
            ),
        ]
        indexes = [
            # The book: only live resting orders, in priority order per side.
            models.Index(
                "market",
                F("price").desc(),
                "id",
                condition=Q(side=OrderSide.BUY, status__in=[s.value for s in RESTING_STATUSES]),
                name="order_book_bids",
            ),
            models.Index(
                fields=["market", "price", "id"],
                condition=Q(side=OrderSide.SELL, status__in=[s.value for s in RESTING_STATUSES]),
                name="order_book_asks",
            ),
            models.Index(
                fields=["market", "stop_price"],
                condition=Q(status=OrderStatus.PENDING_TRIGGER),
                name="order_pending_stops",
            ),
            models.Index(fields=["user", "-id"], name="order_user_recent"),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} {self.side} {self.quantity} {self.market_id} {self.status}"

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity


class OrderEvent(models.Model):
    """Every status change of an order, with its time."""

    # No index of its own: order_event_by_order leads with it.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events", db_index=False)
    status = models.CharField(max_length=16, choices=choices(OrderStatus))
    reason = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["order", "id"], name="order_event_by_order")]

    def __str__(self) -> str:
        return f"{self.order_id} -> {self.status}"


class Trade(models.Model):
    # market, taker_user and maker_user: no index of their own, the composite indexes below
    # lead with each (three indexes less to maintain on every trade).
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="trades", db_index=False)
    price = MoneyField()
    quantity = MoneyField()
    quote_amount = MoneyField()
    taker_side = models.CharField(max_length=4, choices=choices(OrderSide))
    taker_order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="taker_trades")
    maker_order = models.ForeignKey(Order, on_delete=models.PROTECT, null=True, blank=True, related_name="maker_trades")
    taker_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    maker_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    taker_fee = MoneyField()
    maker_fee = MoneyField()
    is_house = models.BooleanField(default=False)
    reference_price = MoneyField()
    executed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="trade_price_positive"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="trade_quantity_positive"),
            models.CheckConstraint(condition=Q(taker_fee__gte=0) & Q(maker_fee__gte=0), name="trade_fees_non_negative"),
            models.CheckConstraint(
                condition=Q(is_house=True) | Q(maker_order__isnull=False), name="trade_book_fill_has_maker_order"
            ),
            models.CheckConstraint(condition=~Q(taker_user=F("maker_user")), name="trade_not_self_trade"),
            models.CheckConstraint(
                condition=Q(taker_side__in=[s.value for s in OrderSide]), name="trade_taker_side_known"
            ),
        ]
        indexes = [
            models.Index(fields=["market", "-id"], name="trade_market_recent"),
            models.Index(fields=["market", "executed_at"], name="trade_market_time"),
            models.Index(fields=["taker_user", "-id"], name="trade_taker_user"),
            models.Index(fields=["maker_user", "-id"], name="trade_maker_user"),
        ]

    def __str__(self) -> str:
        return f"trade {self.pk} {self.quantity}@{self.price}"

    @property
    def total_fee(self) -> Decimal:
        return self.taker_fee + self.maker_fee


class TradeOutboxStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"


class TradeOutbox(models.Model):
    """Transactional outbox of trades, owned by orders: one row per trade, written in the
    batch transaction that made it. Later apps consume it (revenue turns each into its
    revenue events and marks it done) without orders ever importing them."""

    trade = models.OneToOneField(Trade, on_delete=models.PROTECT, related_name="outbox")
    status = models.CharField(max_length=8, choices=choices(TradeOutboxStatus), default=TradeOutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "trade outbox row"
        indexes = [
            models.Index(
                fields=["created_at", "id"], condition=Q(status=TradeOutboxStatus.PENDING), name="trade_outbox_pending"
            ),
        ]

    def __str__(self) -> str:
        return f"trade outbox {self.pk} for trade {self.trade_id} ({self.status})"
