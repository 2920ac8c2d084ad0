"""Admin list views for trading data. Money moves only through services, so every
amount is read-only here."""

from __future__ import annotations

from django.contrib import admin

from orders.models import Asset, Deposit, Market, Order, OrderEvent, Trade, TradeOutbox, Wallet

MONEY_READ_ONLY = ("balance", "locked", "amount", "quantity", "filled_quantity", "quote_filled", "fee_paid",
                   "locked_amount", "price", "stop_price", "quote_amount", "taker_fee", "maker_fee", "reference_price",
                   "last_price")  # fmt: skip


class ReadOnlyMoneyAdmin(admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None):
        own = {f.name for f in self.model._meta.get_fields()}
        return tuple(name for name in MONEY_READ_ONLY if name in own) + tuple(super().get_readonly_fields(request, obj))


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
class WalletAdmin(ReadOnlyMoneyAdmin):
    list_display = ("user", "asset", "bucket", "balance", "locked", "updated_at")
    list_filter = ("asset",)
    search_fields = ("user__username",)
    list_select_related = ("user", "asset")

    def has_add_permission(self, request):
        return False


@admin.register(Deposit)
class DepositAdmin(ReadOnlyMoneyAdmin):
    list_display = ("id", "user", "asset", "bucket", "amount", "created_by", "created_at")
    list_filter = ("asset",)
    search_fields = ("user__username",)
    list_select_related = ("user", "asset", "created_by")

    def has_add_permission(self, request):
        return False


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    readonly_fields = ("status", "reason", "at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyMoneyAdmin):
    list_display = ("id", "user", "market", "side", "type", "time_in_force", "price", "quantity", "filled_quantity",
                    "status", "status_reason", "created_at")  # fmt: skip
    list_filter = ("status", "market", "side", "type", "time_in_force")
    search_fields = ("=id", "user__username", "client_order_id")
    list_select_related = ("user", "market")
    date_hierarchy = "created_at"
    inlines = [OrderEventInline]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False


@admin.register(Trade)
class TradeAdmin(ReadOnlyMoneyAdmin):
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

    def has_add_permission(self, request):
        return False


@admin.register(TradeOutbox)
class TradeOutboxAdmin(admin.ModelAdmin):
    list_display = ("id", "trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")
    list_filter = ("status",)
    search_fields = ("=trade__id", "correlation_id")
    raw_id_fields = ("trade",)
    readonly_fields = ("trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")
    show_full_result_count = False
