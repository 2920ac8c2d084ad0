"""The admin's page to fund the house's stock of one market (Wallets → Fund the house's
stock): the form of `manage.py house_stock_credit`, for staff with `orders.add_deposit`.
The staff credit endpoint refuses the platform's accounts, so this and the command are the
ways in (orders.services.wallets.house_stock_credit)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from core.errors import ApplicationError
from orders.errors import DepositReferenceReused
from orders.models import DEPOSIT_REFERENCE_MAX_LENGTH, Market
from orders.services.wallets import house_stock_credit

PERMISSION = "orders.add_deposit"  # a house credit is a deposit, as a staff credit is
FORM_RESENT = (
    "This form already made a credit, with other figures: nothing more was credited. "
    "Open the form again for another credit."
)


class HouseStockForm(forms.Form):
    market = forms.ModelChoiceField(queryset=Market.objects.select_related("base", "quote").order_by("symbol"))
    asset = forms.CharField(max_length=16, help_text="The market's base (to sell) or quote asset (to buy with).")
    amount = forms.CharField(max_length=64, help_text="A positive decimal, at most 8 decimal places.")
    reason = forms.CharField(
        max_length=500, required=False, help_text="Why (optional; kept on the deposit, the audit trail)."
    )
    # The form's own idempotency key, made when it is shown: sent twice (a double click, a
    # resent form), the credit is made once.
    reference = forms.CharField(widget=forms.HiddenInput, max_length=DEPOSIT_REFERENCE_MAX_LENGTH)


def house_stock_page(model_admin: ModelAdmin[Any], request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: house_stock_credit, the staff member recorded on the deposit."""
    user = request.user
    if not isinstance(user, User) or not user.has_perm(PERMISSION):
        raise PermissionDenied
    form = HouseStockForm(request.POST) if request.method == "POST" else HouseStockForm(initial={"reference": uuid4()})
    if request.method == "POST" and form.is_valid():
        market = form.cleaned_data["market"]
        try:
            wallet = house_stock_credit(
                market=market,
                asset_symbol=form.cleaned_data["asset"].strip().upper(),
                amount=form.cleaned_data["amount"].strip(),
                actor=user,
                reference=form.cleaned_data["reference"],
                reason=form.cleaned_data["reason"] or None,
            )
        except DepositReferenceReused:
            form.add_error(None, FORM_RESENT)
        except ApplicationError as refused:
            for name, errors in (refused.fields or {"__all__": [refused.message]}).items():
                for error in errors:
                    form.add_error(name if name in form.fields else None, error)
        else:
            model_admin.message_user(
                request,
                f"The house's stock of {market.symbol} is now {wallet.balance:f} {wallet.asset.symbol}.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:orders_wallet_changelist"))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Fund the house's stock of a market",
        "opts": model_admin.model._meta,
        "form": form,
    }
    return TemplateResponse(request, "admin/orders/wallet/house_stock.html", context)
