"""The only place that takes row locks. Fixed order on every write path:
the market first (serializes matching for that market only), then wallets in
ascending primary-key order, all in one statement."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import QuerySet, Subquery

from orders.models import Market, Order, Wallet

WalletKey = tuple[int, int, int]  # user id, asset id, bucket


def _markets_for_update() -> QuerySet[Market]:
    # Only the market row is locked; its assets come along for the metrics' labels.
    return Market.objects.select_related("base", "quote").select_for_update(of=("self",))


def lock_market(*, market_id: int) -> Market:
    return _markets_for_update().get(pk=market_id)


def lock_market_by_symbol(*, symbol: str) -> Market | None:
    return _markets_for_update().filter(symbol=symbol).first()


def lock_market_of_order(*, order_id: int, user_id: int) -> Market | None:
    """The market of the user's order, locked in one statement (None: no such order)."""
    owned = Order.objects.filter(pk=order_id, user_id=user_id).values("market_id")[:1]
    return _markets_for_update().filter(pk=Subquery(owned)).first()


def lock_wallets(*, wallet_ids: Iterable[int]) -> dict[int, Wallet]:
    ids = sorted(set(wallet_ids))
    if not ids:
        return {}
    # One statement, ascending ids: two transactions can never wait on each other in a cycle.
    wallets = Wallet.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {wallet.pk: wallet for wallet in wallets}


def lock_wallets_by_key(*, keys: Iterable[WalletKey]) -> dict[WalletKey, Wallet]:
    """The existing wallets of exactly these (user, asset, bucket) keys, locked in one
    statement in ascending id order. A row-value IN list, written by hand: the ORM would
    compile one Q per key, and a cross product of users and assets would lock other
    markets' fee and house wallets."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    meta = Wallet._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in meta.concrete_fields)
    rows = ", ".join(["(%s, %s, %s)"] * len(wanted))
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} "  # noqa: S608  (identifiers from the model)
        f"WHERE ({quote('user_id')}, {quote('asset_id')}, {quote('bucket')}) IN (VALUES {rows}) "
        f"ORDER BY {quote('id')}"
    )
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    params = [value for key in wanted for value in key]
    return {(w.user_id, w.asset_id, w.bucket): w for w in Wallet.objects.raw(sql, params)}
