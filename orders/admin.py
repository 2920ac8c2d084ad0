"""Admin views of trading data. Money moves only through services: wallets, deposits (the
ledger), orders, trades and the trade outbox are read-only here (core.admin.ReadOnlyAdmin:
no add, change or delete); assets and markets are configuration (reference prices change
through the staff endpoint)."""

from __future__ import annotations

from django.contrib import admin

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from orders.models import Asset, Deposit, Market, Order, OrderEvent, Trade, TradeOutbox, Wallet


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ("symbol", "name")
    search_fields = ("symbol", "name")


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    list_display = (
        "symbol",
        "base",
        "quote",
        "price_tick",
        "quantity_step",
        "min_quantity",
        "reference_price",
        "last_price",
        "is_active",
    )
    # Reference prices change through the staff endpoint (validated against the tick).
    readonly_fields = ("reference_price", "last_price")
    list_filter = ("is_active",)


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ("user", "asset", "bucket", "balance", "locked", "updated_at")
    list_filter = ("asset",)
    search_fields = ("user__username",)
    list_select_related = ("user", "asset")


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "asset", "bucket", "amount", "created_by", "created_at")
    list_filter = ("asset",)
    search_fields = ("user__username",)
    list_select_related = ("user", "asset", "created_by")


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    readonly_fields = ("status", "reason", "at")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "market", "side", "type", "time_in_force", "price", "quantity", "filled_quantity",
                    "status", "status_reason", "created_at")  # fmt: skip
    list_filter = ("status", "market", "side", "type", "time_in_force")
    search_fields = ("=id", "user__username", "client_order_id")
    list_select_related = ("user", "market")
    date_hierarchy = "created_at"
    inlines = [OrderEventInline]
    show_full_result_count = False


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "market",
        "price",
        "quantity",
        "taker_side",
        "taker_fee",
        "maker_fee",
        "is_house",
        "executed_at",
    )
    list_filter = ("market", "is_house", "taker_side")
    search_fields = ("=id", "=taker_order__id", "=maker_order__id")
    list_select_related = ("market",)
    raw_id_fields = ("taker_order", "maker_order", "taker_user", "maker_user")
    date_hierarchy = "executed_at"
    show_full_result_count = False


@admin.register(TradeOutbox)
class TradeOutboxAdmin(ReadOnlyAdmin):
    list_display = ("id", "trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")
    list_filter = ("status",)
    search_fields = ("=trade__id", "correlation_id")
    raw_id_fields = ("trade",)
    readonly_fields = ("trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")
    show_full_result_count = False
