"""The only place that takes row locks. Fixed order on every write path:
the market first (serializes matching for that market only), then wallets in
ascending primary-key order, all in one statement."""

from __future__ import annotations

from collections.abc import Iterable

from orders.models import Market, Wallet


def lock_market(*, market_id: int) -> Market:
    return Market.objects.select_for_update().get(pk=market_id)


def lock_wallets(*, wallet_ids: Iterable[int]) -> dict[int, Wallet]:
    ids = sorted(set(wallet_ids))
    if not ids:
        return {}
    # One statement, ascending ids: two transactions can never wait on each other in a cycle.
    wallets = Wallet.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {wallet.pk: wallet for wallet in wallets}
