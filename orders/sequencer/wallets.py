"""The wallets of one batch: rows locked once (one statement for what the commands name),
changed in memory by the engine's postings, written back in one statement."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from core.db import money_sums
from core.money import ZERO
from orders.engine.fees import fee_discount_for
from orders.engine.settlement import Posting, WalletKey
from orders.errors import InsufficientFunds
from orders.locks import wallets_lock
from orders.models import Wallet
from orders.sequencer.arrays import table_update
from orders.sequencer.reads import WalletRow, wallet_rows, wallets_created, wallets_lock_sent


class BatchWallets:
    """Implements orders.engine.market.Wallets for one batch transaction. Rows the commands
    name are locked at the start; a wallet first met later (a maker's, a stop owner's) is
    locked when it must be read, or with the write if it only receives postings.

    `nowait`: those later locks do not wait for another transaction (another engine's batch,
    a deposit) but fail the batch at once. Locks taken in id order in one statement cannot
    deadlock each other, but one taken later can: engine A holding X and waiting for Y while
    B holds Y and waits for X, until PostgreSQL's deadlock_timeout (1 s) ends one. The batch
    is retried instead with every wallet it met locked at the start (Sequencer._run_batch)."""

    def __init__(self, *, nowait: bool = False) -> None:
        self._nowait = nowait
        self._rows: dict[WalletKey, WalletRow] = {}
        self._pending: dict[WalletKey, list[Decimal]] = {}  # postings to rows not locked yet
        self._changed: set[WalletKey] = set()

    def _take(self, rows: dict[WalletKey, WalletRow]) -> None:
        """Rows locked now: the postings they received meanwhile applied."""
        for key, row in rows.items():
            if key in self._rows:
                continue
            self._rows[key] = row
            pending = self._pending.pop(key, None)
            if pending is not None:
                self._apply(key, pending[0], pending[1])

    def load(self, keys: Iterable[WalletKey]) -> None:
        missing = set(keys) - self._rows.keys()
        if missing:
            self._take(wallet_rows(wallets_lock(keys=missing, nowait=self._nowait).values()))

    def adopt(self, rows: dict[WalletKey, WalletRow], *, create: Iterable[WalletKey] = (), later: bool = False) -> None:
        """Rows already locked (orders.sequencer.reads); `create`: keys expected to have a
        row, those without one (a first trade or deposit in an asset) created and locked
        (`later`: after the batch's first locks, so as `nowait` says)."""
        self._take(rows)
        missing = set(create) - self._rows.keys()
        if missing:
            self._take(wallets_created(keys=missing, nowait=later and self._nowait))

    def rows(self) -> dict[WalletKey, WalletRow]:
        """The rows locked so far, with the values the batch gave them."""
        return self._rows

    def met(self) -> set[WalletKey]:
        """Every wallet the batch has locked or posted to so far."""
        return self._rows.keys() | self._pending.keys()

    def available(self, key: WalletKey) -> Decimal:
        row = self._rows.get(key)
        if row is None:
            self.load([key])
            row = self._rows[key]
        return row.balance - row.locked

    def lock(self, key: WalletKey, amount: Decimal) -> None:
        if amount > self.available(key):
            raise InsufficientFunds()
        self._apply(key, ZERO, amount)

    def post(self, postings: Iterable[Posting]) -> None:
        for posting in postings:
            if posting.wallet in self._rows:
                self._apply(posting.wallet, posting.balance, posting.locked)
            else:
                pending = self._pending.setdefault(posting.wallet, [ZERO, ZERO])
                pending[0] += posting.balance
                pending[1] += posting.locked

    def _apply(self, key: WalletKey, balance: Decimal, locked: Decimal) -> None:
        row = self._rows[key]
        row.balance += balance
        row.locked += locked
        self._changed.add(key)

    def lock_pending_sent(self) -> Callable[[], None]:
        """PostgreSQL, in a pipeline: the lock of the rows that only received postings so
        far, sent now; they are taken when the returned function is called."""
        keys = set(self._pending)
        if not keys:
            return lambda: None
        read = wallets_lock_sent(keys, nowait=self._nowait)
        return lambda: self.adopt(read(), create=keys, later=True)

    def lock_pending(self) -> None:
        """Lock the rows that only received postings so far (one statement)."""
        self.load(list(self._pending))

    def flush(self) -> None:
        """Lock what only received postings, then write every changed row in one statement
        (the database's checks still guard each: balance >= 0, 0 <= locked <= balance)."""
        self.lock_pending()
        if not self._changed:
            return
        now = timezone.now()
        rows = sorted((self._rows[key] for key in self._changed), key=lambda row: row.pk)
        table_update(
            Wallet, fields=("balance", "locked", "updated_at"), rows=[(r.pk, r.balance, r.locked, now) for r in rows]
        )
        self._changed.clear()


class BatchDiscounts:
    """Fee discounts from TTX holdings (every bucket), read once per user and batch."""

    def __init__(self, *, ttx_asset_id: int | None = None) -> None:
        self._ttx = ttx_asset_id
        self._discounts: dict[int, Decimal] = {}

    def adopt(self, *, ttx_asset_id: int | None, holdings: dict[int, Decimal], users: Iterable[int]) -> None:
        """The TTX asset as this batch read it, and the holdings of `users` read with it
        (orders.sequencer.reads): a user without any holds none."""
        self._ttx = ttx_asset_id
        for user_id in users:
            self._discounts[user_id] = fee_discount_for(holdings.get(user_id, ZERO))

    def load(self, user_ids: Iterable[int]) -> None:
        missing = set(user_ids) - self._discounts.keys()
        if not missing:
            return
        holdings: dict[int, tuple[Decimal, ...]] = {}
        if self._ttx is not None:
            holdings = money_sums(
                Wallet.objects.filter(Q(user_id__in=missing) & Q(asset_id=self._ttx)),
                group_by="user_id",
                fields=["balance"],
            )
        for user_id in missing:
            self._discounts[user_id] = fee_discount_for(holdings.get(user_id, (ZERO,))[0])

    def __call__(self, user_id: int) -> Decimal:
        known = self._discounts.get(user_id)  # twice per fill: read once per batch, looked up after
        if known is None:
            self.load([user_id])
            known = self._discounts[user_id]
        return known
