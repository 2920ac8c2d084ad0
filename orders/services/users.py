"""An account closed for trading: deactivated, and its live orders cancelled.

Deactivating an account (Django's `is_active`) stops its sign-in, its tokens and API keys,
and its placements (the engine reads each batch's placing users), but not the orders it
already has in the books: they would keep trading for an account staff meant to stop.
Here the account is deactivated first, committed, so that no order of it is placed once
its live orders are cancelled in every market (pending stops included)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from orders.services.orders import orders_cancel_all


def user_deactivate(*, user: AbstractBaseUser) -> list[int]:
    """Deactivate `user` (if still active) and cancel its live orders in every market; the
    ids cancelled. Safe to run again: an account already inactive only has what it still
    has live cancelled. No engine answering: ServiceUnavailable (503), the account stays
    inactive and its orders live until this runs again."""
    # One UPDATE, committed by itself (autocommit) before the engines are asked.
    get_user_model().objects.filter(pk=user.pk, is_active=True).update(is_active=False)
    user.is_active = False
    return orders_cancel_all(user=user)
