"""In-transaction balance changes on locked wallet rows, written back in one statement."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.utils import timezone

from core.db import rows_update
from orders.errors import InsufficientFunds
from orders.locks import WalletKey, lock_wallets_by_key
from orders.models import Wallet
from orders.services.wallets import wallets_create

__all__ = ["LockedLedger", "WalletKey"]


class LockedLedger:
    """Wallet rows locked (ascending ids, one statement) for the rest of the transaction.
    Changes happen in memory and are flushed with one bulk UPDATE; the database's
    check constraints still guard every row."""

    def __init__(self, *, keys: Iterable[WalletKey]) -> None:
        wanted = set(keys)
        self._wallets = lock_wallets_by_key(keys=wanted)
        if len(self._wallets) < len(wanted):
            # A first trade in an asset: create the missing rows, then lock the whole set
            # again in id order (a deadlock with a racing creator is retried whole).
            wallets_create(keys=wanted - self._wallets.keys())
            self._wallets = lock_wallets_by_key(keys=wanted)
        self._by_id = {wallet.pk: wallet for wallet in self._wallets.values()}
        self._changed: set[int] = set()

    def wallet(self, key: WalletKey) -> Wallet:
        return self._wallets[key]

    def available(self, key: WalletKey) -> Decimal:
        wallet = self.wallet(key)
        return wallet.balance - wallet.locked

    def _touch(self, key: WalletKey) -> Wallet:
        wallet = self.wallet(key)
        self._changed.add(wallet.pk)
        return wallet

    def lock(self, key: WalletKey, amount: Decimal) -> None:
        if amount > self.available(key):
            raise InsufficientFunds()
        self._touch(key).locked += amount

    def release(self, key: WalletKey, amount: Decimal) -> None:
        self._touch(key).locked -= amount

    def spend_locked(self, key: WalletKey, amount: Decimal) -> None:
        wallet = self._touch(key)
        wallet.locked -= amount
        wallet.balance -= amount

    def credit(self, key: WalletKey, amount: Decimal) -> None:
        self._touch(key).balance += amount

    def debit(self, key: WalletKey, amount: Decimal) -> None:
        self._touch(key).balance -= amount

    def flush(self) -> None:
        if not self._changed:
            return
        now = timezone.now()
        changed = [self._by_id[pk] for pk in sorted(self._changed)]
        for wallet in changed:
            wallet.updated_at = now
        rows_update(objects=changed, fields=["balance", "locked", "updated_at"])
        self._changed.clear()
