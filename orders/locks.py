"""The only place that takes row locks. Fixed order on every write path:
the market first (serializes matching for that market only), then wallets in
ascending primary-key order, all in one statement.

They run on every order, so they are written out (core.db.rows_select): compiling a
`select_for_update()` query cost more CPU than PostgreSQL spends running it."""

from __future__ import annotations

from collections.abc import Iterable

from core.db import quote_name as q
from core.db import rows_select
from orders.models import Market, Order, Wallet

WalletKey = tuple[int, int, int]  # user id, asset id, bucket


def lock_market(*, market_id: int) -> Market:
    rows = rows_select(Market, where=f"{q('id')} = %s", params=[market_id], for_update=True)
    if not rows:
        raise Market.DoesNotExist(f"market {market_id}")
    return rows[0]


def lock_market_by_symbol(*, symbol: str) -> Market | None:
    rows = rows_select(Market, where=f"{q('symbol')} = %s", params=[symbol], for_update=True)
    return rows[0] if rows else None


def lock_market_of_order(*, order_id: int, user_id: int) -> Market | None:
    """The market of the user's order, locked in one statement (None: no such order)."""
    owned = (
        f"SELECT {q('market_id')} FROM {q(Order._meta.db_table)} "  # noqa: S608  (identifiers from the model)
        f"WHERE {q('id')} = %s AND {q('user_id')} = %s"
    )
    rows = rows_select(Market, where=f"{q('id')} = ({owned})", params=[order_id, user_id], for_update=True)
    return rows[0] if rows else None


def lock_wallets_by_key(*, keys: Iterable[WalletKey]) -> dict[WalletKey, Wallet]:
    """The existing wallets of exactly these (user, asset, bucket) keys, locked in one
    statement in ascending id order. A cross product of users and assets would also lock
    other markets' fee and house wallets."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = ", ".join(["(%s, %s, %s)"] * len(wanted))
    wallets = rows_select(
        Wallet,
        where=f"({q('user_id')}, {q('asset_id')}, {q('bucket')}) IN (VALUES {rows})",
        params=[value for key in wanted for value in key],
        order_by=q("id"),
        for_update=True,
    )
    return {(w.user_id, w.asset_id, w.bucket): w for w in wallets}


def wallets_lock(*, keys: Iterable[WalletKey]) -> dict[WalletKey, Wallet]:
    """The wallets of these (user, asset, bucket) keys, locked in one statement in id order;
    missing rows (a first trade or deposit in an asset) are created, then the whole set is
    locked again in id order (a deadlock with a racing creator is retried whole)."""
    wanted = set(keys)
    locked = lock_wallets_by_key(keys=wanted)
    if len(locked) < len(wanted):
        Wallet.objects.bulk_create(
            [Wallet(user_id=u, asset_id=a, bucket=b) for u, a, b in sorted(wanted - locked.keys())],
            ignore_conflicts=True,
        )
        locked = lock_wallets_by_key(keys=wanted)
    return locked
