"""What the sequencer knows of the rows a batch reads, as its last batches read or wrote
them: the values a batch applied ahead assumes while the batch before it commits.

A batch applied ahead (Sequencer.run_overlapped) names the same rows as any batch
(_Batch.plan) but takes their values from here instead of the database, because the
connection is busy committing the batch before it. When that one has committed, the
batch ahead reads and locks its rows as every batch does, and `same` compares: where
anything differs (a deposit or a staff credit committed in between, a user deactivated or its password changed,
a market changed, a client order id already taken, the reference price that is a quote
asset's dollar rate changed) the batch is taken back in memory and applied again on what
was read. Nothing here is ever written."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.money import ZERO
from orders.engine.settlement import WalletKey
from orders.sequencer.reads import BatchReads, BatchWanted, WalletRow

# Wallets, users and holders known at most (each): past it the oldest half is forgotten. A
# batch applied ahead names the rows of the traders of the last few batches; everything it
# does not find here it reads as any batch does (Unknown). Kept for good, what the batches had
# read grew with every account that ever traded, for as long as the engine ran: 1.2 KB an
# account with two wallets (tracemalloc), 1.1 GiB in the engine for a million accounts.
KNOWN_REMEMBERED = 50_000


class Unknown(Exception):
    """A batch applied ahead needed what the sequencer does not know (or the database)."""


def _bounded(known: dict[Any, Any]) -> None:
    """Forgets the oldest half of `known` once it holds more than KNOWN_REMEMBERED (dicts keep
    insertion order; what a batch learns is inserted again, so the oldest are the ones no
    batch has named for longest)."""
    if len(known) > KNOWN_REMEMBERED:
        for key in list(itertools.islice(known, len(known) // 2)):
            del known[key]


@dataclass
class Known:
    wallets: dict[WalletKey, tuple[int, Decimal, Decimal]] = field(default_factory=dict)  # id, balance, locked
    active: dict[int, tuple[str, ...]] = field(default_factory=dict)  # users found active, their password marks
    holdings: dict[int, Decimal] = field(default_factory=dict)  # TTX per user, every bucket
    ttx_asset_id: int | None = None
    ttx_read: bool = False
    rate_prices: dict[str, Decimal | None] = field(default_factory=dict)  # by rate market (None: no such market)

    def clear(self) -> None:
        self.wallets.clear()
        self.active.clear()
        self.holdings.clear()
        self.rate_prices.clear()
        self.ttx_asset_id, self.ttx_read = None, False

    def learn_reads(self, wanted: BatchWanted, reads: BatchReads) -> None:
        """What a batch read (and locked) for what it named."""
        wallets, holdings = self.wallets, self.holdings
        for key, row in reads.wallets.items():
            wallets.pop(key, None)
            wallets[key] = (int(row.pk), row.balance, row.locked)
        for user in wanted.users:
            self.active.pop(user, None)
        self.active.update(reads.active_users)
        for user in wanted.holders:
            holdings.pop(user, None)
            holdings[user] = reads.holdings.get(user, ZERO)
        _bounded(wallets)
        _bounded(self.active)
        _bounded(holdings)
        if wanted.market_ids:
            self.ttx_asset_id, self.ttx_read = reads.ttx_asset_id, True
        for symbol in wanted.rate_markets:
            self.rate_prices[symbol] = reads.rate_prices.get(symbol)

    def learn_written(self, rows: dict[WalletKey, WalletRow]) -> None:
        """The wallets as a batch wrote them (its commit may still fail: then `clear`)."""
        wallets = self.wallets
        for key, row in rows.items():
            wallets.pop(key, None)
            wallets[key] = (int(row.pk), row.balance, row.locked)
        _bounded(wallets)

    def assumed(self, wanted: BatchWanted, *, markets: list[tuple[Any, ...]]) -> BatchReads:
        """What reading `wanted` would give if nothing changed since (Unknown otherwise):
        `markets`, the market rows as the sequencer holds them."""
        if wanted.market_ids and not self.ttx_read:
            raise Unknown("the TTX asset")
        if not all(user in self.active for user in wanted.users):
            raise Unknown("a user's state")
        wallets: dict[WalletKey, WalletRow] = {}
        for key in wanted.wallet_keys:
            known = self.wallets.get(key)
            if known is None:
                raise Unknown(f"wallet {key}")
            pk, balance, locked = known
            wallets[key] = WalletRow(pk, key[0], key[1], key[2], balance, locked)
        holdings: dict[int, Decimal] = {}
        for user in wanted.holders:
            held = self.holdings.get(user)
            if held is None:
                raise Unknown(f"the holdings of user {user}")
            if held:
                holdings[user] = held
        rate_prices: dict[str, Decimal] = {}
        for symbol in wanted.rate_markets:
            if symbol not in self.rate_prices:
                raise Unknown(f"the reference price of {symbol}")
            price = self.rate_prices[symbol]
            if price is not None:
                rate_prices[symbol] = price
        return BatchReads(
            active_users={user: self.active[user] for user in wanted.users},
            markets=markets,
            ttx_asset_id=self.ttx_asset_id,
            wallets=wallets,
            holdings=holdings,
            client_ids=[],  # none taken: a client order id found by the read sends it back
            rate_prices=rate_prices,
        )


def same(
    wanted: BatchWanted, *, assumed: BatchReads, values: dict[WalletKey, tuple[int, Decimal, Decimal]], read: BatchReads
) -> bool:
    """Whether what was read is what the batch applied ahead assumed (`values`: of its
    wallets, as they were assumed; the rows of `assumed` changed since, as it applied)."""
    if any(read.active_users.get(user) != assumed.active_users[user] for user in wanted.users) or read.client_ids:
        return False
    if sorted(read.markets) != sorted(assumed.markets):
        return False
    if wanted.market_ids and read.ttx_asset_id != assumed.ttx_asset_id:
        return False
    if read.rate_prices != assumed.rate_prices:
        return False
    if any(read.holdings.get(user, ZERO) != assumed.holdings.get(user, ZERO) for user in wanted.holders):
        return False
    if read.wallets.keys() != values.keys():
        return False
    return all((row.pk, row.balance, row.locked) == values[key] for key, row in read.wallets.items())
