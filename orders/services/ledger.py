"""In-transaction balance changes on locked wallet rows, written back in one statement."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.utils import timezone

from core.db import rows_update
from orders.errors import InsufficientFunds
from orders.locks import lock_wallets
from orders.models import Wallet
from orders.services.wallets import wallets_ensure

WalletKey = tuple[int, int, int]  # user id, asset id, bucket


class LockedLedger:
    """Wallet rows locked (ascending ids, one statement) for the rest of the transaction.
    Changes happen in memory and are flushed with one bulk UPDATE; the database's
    check constraints still guard every row."""

    def __init__(self, *, keys: Iterable[WalletKey]) -> None:
        self._ids = wallets_ensure(keys=keys)
        self._wallets = lock_wallets(wallet_ids=self._ids.values())
        self._changed: set[int] = set()

    def wallet(self, key: WalletKey) -> Wallet:
        return self._wallets[self._ids[key]]

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
        changed = [self._wallets[pk] for pk in sorted(self._changed)]
        for wallet in changed:
            wallet.updated_at = now
        rows_update(objects=changed, fields=["balance", "locked", "updated_at"])
        self._changed.clear()
