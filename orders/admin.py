"""Admin views of trading data. Money moves only through services: wallets, deposits (the
ledger), orders, trades and the trade outbox are read-only here (core.admin.ReadOnlyAdmin:
no add, change or delete); assets and markets are configuration (reference prices change
through the staff endpoint). Users: accounts' admin, where deactivating an account also
cancels its live orders (orders.services.users.user_deactivate)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth import get_user_model
from django.contrib.messages import ERROR, WARNING
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path

from accounts.admin import PlatformUserAdmin
from core.admin import ReadOnlyAdmin, ReadOnlyInline, SelectionCheckedAdmin
from core.errors import InvalidInput, ServiceUnavailable
from core.text import staff_reason_clean
from orders.admin_house import PERMISSION as HOUSE_STOCK_PERMISSION
from orders.admin_house import house_stock_page
from orders.engine.types import TimeInForce
from orders.models import Asset, Deposit, Market, Order, OrderEvent, Trade, TradeOutbox, Wallet
from orders.selectors.orders import order_search_condition
from orders.services.markets import asset_definition_check, market_definition_check, market_engine_check
from orders.services.users import user_deactivate


class TimeInForceFilter(admin.SimpleListFilter):
    """Time in force by the vocabulary's own names (GTC, IOC, FOK), not title-cased labels."""

    title = "time in force"
    parameter_name = "time_in_force"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(tif.value, tif.value) for tif in TimeInForce]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(time_in_force=self.value()) if self.value() else queryset


class AssetAdminForm(forms.ModelForm):
    class Meta:
        model = Asset
        fields = ["symbol", "name"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "symbol" in self.fields:
            for field, messages in asset_definition_check(symbol=cleaned.get("symbol")).items():
                for message in messages:
                    self.add_error(field, message)
        return cleaned


@admin.register(Asset)
class AssetAdmin(SelectionCheckedAdmin):
    """An asset's symbol is part of its markets' symbols and of wallets as the API shows them:
    set once, when it is added; its name stays editable."""

    form = AssetAdminForm
    list_display = ("symbol", "name")
    search_fields = ("symbol", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: Asset | None = None) -> tuple[str, ...]:
        return () if obj is None else ("symbol",)


# What staff define of a market (orders.services.markets.market_definition_check).
MARKET_DEFINITION = ("symbol", "base", "quote", "price_tick", "quantity_step", "min_quantity", "reference_price")


class MarketAdminForm(forms.ModelForm):
    class Meta:
        model = Market
        fields = [*MARKET_DEFINITION, "is_active"]

    def clean(self) -> dict[str, Any]:
        """The rules are orders.services.markets.market_definition_check's; a field shown
        read-only (the pair and steps of an existing market) is checked with its value."""
        cleaned = super().clean() or {}

        def value(name: str) -> Any:
            return cleaned.get(name) if name in self.fields else getattr(self.instance, name, None)

        base, quote = value("base"), value("quote")
        errors = market_definition_check(
            base=base.symbol if base is not None else None,
            quote=quote.symbol if quote is not None else None,
            symbol=value("symbol"),
            price_tick=value("price_tick"),
            quantity_step=value("quantity_step"),
            min_quantity=value("min_quantity"),
            reference_price=value("reference_price"),
        )
        if self.instance.pk is None and value("symbol"):
            errors.setdefault("symbol", []).extend(market_engine_check(symbol=value("symbol")))
        for field, messages in errors.items():
            for message in messages:
                self.add_error(None if field == "__all__" or field not in self.fields else field, message)
        return cleaned


@admin.register(Market)
class MarketAdmin(SelectionCheckedAdmin):
    """A market is created here; its steps and pair stay as created (the leading engine
    keeps a market's steps from when it loaded it, and resting orders are multiples of the
    old ones). Reference prices change through the staff endpoint, through the engine."""

    form = MarketAdminForm
    list_display = (*MARKET_DEFINITION, "last_price", "is_active")
    list_filter = ("is_active",)

    def has_delete_permission(self, request: HttpRequest, obj: Market | None = None) -> bool:
        """Never: a leading engine keeps the markets it loaded, and a batch of orders in one
        that was deleted failed on its foreign key (the other commands of that batch retried
        with it). A market is closed by unticking Active: no new orders, its resting ones
        cancelled by their owners."""
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Market | None = None) -> tuple[str, ...]:
        if obj is None:  # the reference price was read-only here too: adding a market was a 500
            return ("last_price",)
        # Once created only the minimum quantity (and whether it is active) changes here.
        return (*(name for name in MARKET_DEFINITION if name != "min_quantity"), "last_price")


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ("user", "asset", "bucket", "balance", "locked", "updated_at")
    list_filter = ("asset",)
    search_fields = ("user__username",)
    list_select_related = ("user", "asset")

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.house_stock_view)
        return [path("house-stock/", view, name="orders_wallet_house_stock"), *super().get_urls()]

    def house_stock_view(self, request: HttpRequest) -> HttpResponse:
        return house_stock_page(self, request)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {**(extra_context or {}), "can_fund_house": request.user.has_perm(HOUSE_STOCK_PERMISSION)}
        return super().changelist_view(request, context)


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "asset", "bucket", "amount", "created_by", "created_at", "reference", "reason")
    list_filter = ("asset",)
    search_fields = ("user__username", "=reference", "reason")
    list_select_related = ("user", "asset", "created_by")


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    readonly_fields = ("status", "reason", "at")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "market", "side", "type", "tif", "price", "quantity", "filled_quantity",
                    "status", "status_reason", "created_at")  # fmt: skip
    # Dates filter from the sidebar (links, no query): a date_hierarchy read every order's
    # date, unindexed, on each load of the list (MIN/MAX, then the distinct days).
    list_filter = ("status", "market", "side", "type", TimeInForceFilter, "created_at")
    exclude = ("time_in_force",)
    readonly_fields = ("tif",)
    search_fields = ("=id",)  # the box; what it matches: get_search_results
    search_help_text = "An order's id, a client order id or a username, exactly."
    list_select_related = ("user", "market")
    inlines = [OrderEventInline]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Order], search_term: str
    ) -> tuple[QuerySet[Order], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(order_search_condition(term=search_term)), False

    @admin.display(description="time in force", ordering="time_in_force")
    def tif(self, order: Order) -> str:
        return TimeInForce(order.time_in_force).value


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
    list_filter = ("market", "is_house", "taker_side", "executed_at")  # not a date_hierarchy: as for orders
    search_fields = ("=id", "=taker_order__id", "=maker_order__id")
    list_select_related = ("market",)
    raw_id_fields = ("taker_order", "maker_order", "taker_user", "maker_user")


@admin.register(TradeOutbox)
class TradeOutboxAdmin(ReadOnlyAdmin):
    list_display = ("id", "trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")
    list_filter = ("status",)
    search_fields = ("=trade__id", "correlation_id")
    raw_id_fields = ("trade",)
    readonly_fields = ("trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")


# Set on the request by TraderUserAdmin.save_model: the account its form deactivated, whose
# orders are cancelled once the form's transaction has committed.
DEACTIVATED_BY_FORM = "_orders_deactivated_by_form"
# How the account's History names the list's action.
DEACTIVATED_BY_ACTION = "Deactivated (list action “Deactivate and cancel their open orders”)"


DEACTIVATION_REASON_BLANK = "A reason, when given, says something (or leave it out): it is kept in the History."


class UserActionForm(ActionForm):
    """The users list's action bar with a reason beside it, written with the deactivation
    into each account's History."""

    reason = forms.CharField(
        required=False,
        label="Reason",
        widget=forms.TextInput(
            attrs={"maxlength": 500, "size": 40, "placeholder": "reason (optional, kept in the History)"}
        ),
    )


class TraderUserAdmin(PlatformUserAdmin):
    """accounts' user admin, with an account's trading closed when it is deactivated: its
    live orders are cancelled in every market, from the change form (unticking Active) or
    the list's action. With no engine answering, the account stays inactive and the message
    says to run the action again."""

    actions = ["deactivate_and_cancel_orders"]
    action_form = UserActionForm

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            setattr(request, DEACTIVATED_BY_FORM, obj)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().changeform_view(request, *args, **kwargs)  # committed on return
        deactivated = getattr(request, DEACTIVATED_BY_FORM, None)
        if deactivated is not None:
            self._close(request, [deactivated])
        return response

    @admin.action(permissions=["change"], description="Deactivate and cancel their open orders")
    def deactivate_and_cancel_orders(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        typed = request.POST.get("reason", "")
        try:
            why = staff_reason_clean(reason=typed, missing=DEACTIVATION_REASON_BLANK) if typed else ""
        except InvalidInput as invalid:
            problems = " ".join((invalid.fields or {}).get("reason", [invalid.message]))
            self.message_user(request, f"Nothing was deactivated, the reason is refused: {problems}", level=ERROR)
            return
        closable, refused = [], []
        for user in queryset.order_by("pk"):
            if user.pk == request.user.pk or not self.has_change_permission(request, user):
                refused.append(user.get_username())
            else:
                closable.append(user)
        if refused:
            self.message_user(request, f"Not yours to deactivate here: {', '.join(refused)}.", level=WARNING)
        self._close(request, closable, by_action=True, reason=why)

    def _close(self, request: HttpRequest, users: list[Any], *, by_action: bool = False, reason: str = "") -> None:
        """`by_action`: the list's action, which Django records nowhere (the form's change is
        in the account's History already): each account it deactivates is written there,
        with the `reason` typed beside the action."""
        why = f"; reason: {reason}" if reason else ""
        for user in users:
            name = user.get_username()
            try:
                cancelled = user_deactivate(user=user)
            except ServiceUnavailable:
                if by_action:
                    self.log_change(
                        request,
                        user,
                        f"{DEACTIVATED_BY_ACTION}; its open orders not cancelled: no engine answered{why}.",
                    )
                self.message_user(
                    request,
                    f"{name} is deactivated, but its open orders could not be cancelled: the matching "
                    "engine did not answer. Run “Deactivate and cancel their open orders” on it again.",
                    level=ERROR,
                )
                continue
            if by_action:
                self.log_change(
                    request, user, f"{DEACTIVATED_BY_ACTION}; {len(cancelled)} open order(s) cancelled{why}."
                )
            self.message_user(request, f"{name} is deactivated; {len(cancelled)} open order(s) cancelled.")


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), TraderUserAdmin)
