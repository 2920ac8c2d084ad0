"""In-transaction balance changes on locked wallet rows, written back in one statement."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.utils import timezone

from core.db import rows_update
from orders.errors import InsufficientFunds
from orders.locks import WalletKey
from orders.models import Wallet
from orders.services.wallets import wallets_lock

__all__ = ["LockedLedger", "WalletKey"]


class LockedLedger:
    """Wallet rows locked (ascending ids, one statement) for the rest of the transaction.
    Changes happen in memory and are flushed with one bulk UPDATE; the database's
    check constraints still guard every row."""

    def __init__(self, *, keys: Iterable[WalletKey]) -> None:
        self._wallets = wallets_lock(keys=keys)
        self._changed: set[WalletKey] = set()

    def wallet(self, key: WalletKey) -> Wallet:
        return self._wallets[key]

    def available(self, key: WalletKey) -> Decimal:
        wallet = self.wallet(key)
        return wallet.balance - wallet.locked

    def _touch(self, key: WalletKey) -> Wallet:
        self._changed.add(key)
        return self.wallet(key)

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
        changed = sorted((self._wallets[key] for key in self._changed), key=lambda wallet: wallet.pk)
        for wallet in changed:
            wallet.updated_at = now
        rows_update(objects=changed, fields=["balance", "locked", "updated_at"])
        self._changed.clear()
