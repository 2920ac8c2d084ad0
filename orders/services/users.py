"""An account closed for trading: deactivated, and its live orders cancelled.

Deactivating an account (Django's `is_active`) stops its sign-in, its tokens and API keys,
and its placements (the engine reads each batch's placing users), but not the orders it
already has in the books: they would keep trading for an account staff meant to stop.
Here the account is deactivated first, committed, so that no order of it is placed once
its live orders are cancelled in every market (pending stops included); its API keys are
deleted and its refresh tokens revoked, which a reactivation would otherwise bring back. An
account deactivated another way (a bare `save()`, a bulk update, or here while no engine
answered) has all this done by the periodic sweep (orders.tasks.inactive_orders_sweep)."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from accounts.services import inactive_credentials_revoke
from core.errors import ServiceUnavailable
from orders.selectors.users import user_list_inactive_with_live_orders
from orders.services.orders import orders_cancel_all

logger = logging.getLogger(__name__)


def user_deactivate(*, user: AbstractBaseUser) -> list[int]:
    """Deactivate `user` (if still active) and cancel its live orders in every market; the
    ids cancelled. Safe to run again: an account already inactive only has what it still
    has live cancelled. No engine answering: ServiceUnavailable (503), the account stays
    inactive and its orders live until this runs again (or the sweep below does)."""
    # One UPDATE, committed by itself (autocommit) before the engines are asked.
    get_user_model().objects.filter(pk=user.pk, is_active=True).update(is_active=False)
    user.is_active = False
    inactive_credentials_revoke(user_id=user.pk)
    return orders_cancel_all(user=user)


def users_inactive_orders_cancel() -> list[int]:
    """Cancel, in every market, the live orders of the inactive accounts that still have
    some (as user_deactivate does for the one it deactivates): the ids cancelled. Nothing to
    do: one query. No engine answering: a warning, and what is left stays live for the next
    run (the accounts stay inactive, so they are found again)."""
    cancelled: list[int] = []
    for user in user_list_inactive_with_live_orders():
        try:
            ids = orders_cancel_all(user=user)
        except ServiceUnavailable:
            # Stop here: the next account would wait out the same timeout, for the same answer.
            logger.warning("inactive accounts' orders not cancelled: no engine answered", extra={"user_id": user.pk})
            break
        logger.info("inactive account's orders cancelled", extra={"user_id": user.pk, "cancelled": len(ids)})
        cancelled.extend(ids)
    return cancelled


def users_inactive_close() -> list[int]:
    """The periodic sweep (orders.tasks.inactive_orders_sweep): closes what user_deactivate
    closes for accounts deactivated another way: their API keys and refresh tokens revoked
    (accounts.services.inactive_credentials_revoke), then their live orders cancelled; the
    order ids cancelled. Nothing to do: three queries."""
    inactive_credentials_revoke()
    return users_inactive_orders_cancel()
