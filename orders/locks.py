"""The only place that takes row locks: wallets, by key, in ascending primary-key order,
in one statement (a batch of the sequencer, a deposit). No market row is locked: one
sequencer writes each market (docs/matching.md).

They run on every order, so they are written out (core.db.rows_select): compiling a
`select_for_update()` query cost more CPU than PostgreSQL spends running it."""

from __future__ import annotations

from collections.abc import Iterable

from core.db import quote_name as q
from core.db import rows_select
from orders.engine.settlement import WalletKey
from orders.models import Asset, Wallet

__all__ = ["WalletKey", "lock_asset", "lock_wallets_by_key", "wallets_lock"]


def lock_asset(*, asset_id: int) -> None:
    """The asset's row: serializes the deposits of one asset (their supply check)."""
    rows_select(Asset, where=f"{q('id')} = %s", params=[asset_id], fields=["id"], for_update=True)


def lock_wallets_by_key(*, keys: Iterable[WalletKey], nowait: bool = False) -> dict[WalletKey, Wallet]:
    """The existing wallets of exactly these (user, asset, bucket) keys, locked in one
    statement in ascending id order. A cross product of users and assets would also lock
    other markets' fee and house wallets. `nowait`: fail at once on a row another
    transaction holds (core.db.rows_select)."""
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
        nowait=nowait,
    )
    return {(w.user_id, w.asset_id, w.bucket): w for w in wallets}


def wallets_lock(*, keys: Iterable[WalletKey], nowait: bool = False) -> dict[WalletKey, Wallet]:
    """The wallets of these (user, asset, bucket) keys, locked in one statement in id order;
    missing rows (a first trade or deposit in an asset) are created, then the whole set is
    locked again in id order (a deadlock with a racing creator is retried whole)."""
    wanted = set(keys)
    locked = lock_wallets_by_key(keys=wanted, nowait=nowait)
    if len(locked) < len(wanted):
        Wallet.objects.bulk_create(
            [Wallet(user_id=u, asset_id=a, bucket=b) for u, a, b in sorted(wanted - locked.keys())],
            ignore_conflicts=True,
        )
        locked = lock_wallets_by_key(keys=wanted, nowait=nowait)
    return locked
