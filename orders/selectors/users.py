"""Accounts as trading sees them."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef

from orders.models import Order
from orders.selectors.orders import LIVE_BY_INDEX, LIVE_ORDER_INDEXES

# Live orders (LIVE_STATUSES) spelled as the conditions of the partial indexes that hold
# them (orders.selectors.orders.LIVE_BY_INDEX), so that PostgreSQL can read them from those:
# `status IN (...)` matches none, and it read every order ever placed (a sequential scan)
# or, account by account, the whole history of each inactive one (order_user_recent).
__all__ = ["LIVE_BY_INDEX", "LIVE_ORDER_INDEXES", "user_list_inactive_with_live_orders"]


def user_list_inactive_with_live_orders() -> list[AbstractBaseUser]:
    """Inactive accounts that still have a live order (pending stops included), by id. One
    statement, read through indexes: the live orders from their partial indexes, or each
    inactive account's orders from order_user_recent, whichever the planner finds cheaper;
    no index of its own, which every placement and fill would have to keep up."""
    live = Order.objects.filter(LIVE_BY_INDEX, user=OuterRef("pk"))
    return list(get_user_model().objects.filter(Exists(live), is_active=False).order_by("pk"))
