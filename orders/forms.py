"""Forms of the trading pages. They check the shape of the input (the same shape as
POST /api/orders); prices and quantities stay strings so that tick, step and every
other trading rule is checked by the order service, exactly as for the API."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum

from django import forms
from django.conf import settings

from accounts.forms import ServiceForm
from core.money import AMOUNT_TEXT_MAX_LENGTH
from orders.engine.requests import OrderRequest
from orders.models import Market, OrderSide, OrderStatus, OrderType, SelfTradePrevention, TimeInForce, choices


def step_attr(value: Decimal) -> str:
    """A decimal as an HTML step/min attribute: 0.01, 0.0001, 1, never 1E+1."""
    return f"{value.normalize():f}"


def ticket_choices(members: Iterable[StrEnum]) -> list[tuple[str, str]]:
    """The ticket's buttons: a value of the vocabulary each, labelled in sentence case ("Stop loss")."""
    return [(member.value, member.value.replace("_", " ").capitalize()) for member in members]


TIME_IN_FORCE_MEANINGS = {
    TimeInForce.GTC: "good till cancelled",
    TimeInForce.IOC: "immediate or cancel",
    TimeInForce.FOK: "fill or kill",
}


class OrderForm(ServiceForm):
    side = forms.ChoiceField(choices=ticket_choices(OrderSide), initial=OrderSide.BUY)
    # Limit first: the ticket's default.
    type = forms.ChoiceField(
        choices=ticket_choices(sorted(OrderType, key=lambda kind: kind != OrderType.LIMIT)), initial=OrderType.LIMIT
    )
    # Not stripped: the text goes as typed to the one amount parser (core.money), as the API's does.
    price = forms.CharField(required=False, max_length=AMOUNT_TEXT_MAX_LENGTH, strip=False)
    stop_price = forms.CharField(required=False, max_length=AMOUNT_TEXT_MAX_LENGTH, strip=False)
    # Not required here: an empty amount goes to the service, which refuses it as the API
    # refuses "quantity": "" (invalid_quantity); the form's own validation_error said otherwise.
    quantity = forms.CharField(required=False, max_length=AMOUNT_TEXT_MAX_LENGTH, strip=False)
    time_in_force = forms.ChoiceField(
        choices=[
            ("", "Auto (GTC limit · IOC otherwise)"),
            *((tif.value, f"{tif.value} · {TIME_IN_FORCE_MEANINGS[tif]}") for tif in TimeInForce),
        ],
        required=False,
    )
    client_order_id = forms.CharField(required=False, max_length=64)
    stp = forms.ChoiceField(choices=[("", "Default (skip)"), *choices(SelfTradePrevention)], required=False)
    # A one-time id of this rendered ticket (orders.services.orders.order_place_from_ticket).
    ticket = forms.CharField(required=False, max_length=64)
    # The user this ticket was rendered for (order_place_from_ticket's `opened_for`).
    account = forms.IntegerField(required=False, min_value=1)

    def __init__(self, *args: object, market: Market, account: int | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if not self.is_bound and account is not None:
            self.initial.setdefault("account", account)
        self.market = market
        self.price_step = step_attr(market.price_tick)
        self.quantity_step = step_attr(market.quantity_step)
        self.quantity_min = step_attr(market.min_quantity)
        if not self.is_bound and not self.initial.get("ticket"):
            self.initial["ticket"] = secrets.token_urlsafe(16)

    @property
    def fee_bps(self) -> int:
        """The taker fee rate, the most an order pays (before a TTX discount): the ticket's total."""
        return int(settings.TAKER_FEE_BPS)

    def order_request(self) -> OrderRequest:
        data = self.cleaned_data
        return OrderRequest(
            market=self.market.symbol,
            side=data["side"],
            type=data["type"],
            quantity=data["quantity"],
            price=data["price"] or None,
            stop_price=data["stop_price"] or None,
            time_in_force=data["time_in_force"] or None,
            client_order_id=data["client_order_id"] or None,
            stp=data["stp"] or None,
        )

    def values_to_keep(self) -> dict[str, str]:
        """After a placed order: the same ticket again, without its client order id
        (which would otherwise name the order just placed)."""
        return {
            name: value
            for name, value in self.data.items()
            if name in self.fields and name not in ("client_order_id", "ticket")
        }


class MarketFilterForm(forms.Form):
    """A history page's filters (`?market=`): every market, those staff deactivated too."""

    market = forms.ChoiceField(required=False)

    def __init__(self, *args: object, markets: list[Market], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["market"].choices = [("", "All markets"), *((m.symbol, m.symbol) for m in markets)]  # type: ignore[attr-defined]

    def filters(self) -> dict[str, str | None]:
        """Each filter's value, None for any: a filter not understood is left out, the others
        apply (all of them were left out, while the page's selects still showed the valid ones)."""
        self.is_valid()  # bound: cleaned_data then holds the fields that are valid, only them
        cleaned = getattr(self, "cleaned_data", {})  # unbound (no query): none
        return {name: cleaned.get(name) or None for name in self.fields}


class OrderFilterForm(MarketFilterForm):
    status = forms.ChoiceField(
        choices=[
            ("", "Any status"),
            *(
                (value, "Open (incl. partially filled)" if value == OrderStatus.OPEN else label)
                for value, label in choices(OrderStatus)
            ),
        ],
        required=False,
    )
