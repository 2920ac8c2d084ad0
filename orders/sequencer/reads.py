"""What a batch reads before applying its commands, in one round trip on PostgreSQL.

The users of commands authenticated from their credentials alone (are they active), the
rows of the markets the commands name (staff may have changed them) with the TTX asset's
id (it may have been created since), the reference prices that are the dollar rates of the
quote assets of markets placed in that are not quoted in a USD-pegged asset (the house's
cap: an ETH-BTC placement reads BTC-USDT's, which another shard may have changed; none for
a USDT market), the wallets the commands name (locked), the TTX holdings of the placing
users (fee discounts) and the orders holding the client order ids given. None of these
waits for another's answer, so on PostgreSQL they are sent together in a pipeline: one
round trip instead of up to six. (psycopg still sends the transaction's BEGIN ahead of
them and waits for its answer, pipeline or not.)
Other backends (SQLite): the same statements one after the other, through the ORM.

Every one of them is still read in every batch: what staff changed (a market, a user
deactivated, an asset created, a credit) applies from the next batch, as before."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Subquery
from django.utils import timezone

from accounts.credentials import password_marks_of_hash
from core.db import money_sums
from core.db import quote_name as q
from core.money import ZERO
from orders.engine.settlement import WalletKey
from orders.locks import lock_wallets_by_key, wallets_lock
from orders.models import Asset, Market, Order, Trade, TradeOutbox, Wallet
from orders.sequencer.arrays import array_literal, ids_reserve, statements_pipelined, table_insert

# The tables whose new ids a batch draws from their sequences, in the order of
# BatchReads.ids and of the writer's reservation (orders.sequencer.writer).
NEW_ID_MODELS = (Order, Trade, TradeOutbox)
MARKET_FIELDS = ("id", "is_active", "price_tick", "quantity_step", "min_quantity", "reference_price")
_CLIENT_ID_FIELDS = ("id", "user_id", "client_order_id", "request_fingerprint")
# A wallet created by a batch: its key, nothing in it yet.
WALLET_CREATED_FIELDS = ("user", "asset", "bucket", "balance", "locked", "updated_at")


@dataclass(slots=True)
class WalletRow:
    """A wallet row locked by a batch: its id, key and amounts, all a batch reads or
    writes of it (the engine changes `balance` and `locked` in memory). Not a model
    instance: building one per wallet and batch, its timestamps parsed, was 3% of the
    sequencer thread (docs/performance.md)."""

    pk: int
    user_id: int
    asset_id: int
    bucket: int
    balance: Decimal
    locked: Decimal

    @property
    def key(self) -> WalletKey:
        return (self.user_id, self.asset_id, self.bucket)


def wallet_rows(wallets: Collection[Wallet]) -> dict[WalletKey, WalletRow]:
    """Rows read through the ORM (SQLite, a wallet created by the batch), by key."""
    rows = (WalletRow(int(w.pk), w.user_id, w.asset_id, w.bucket, w.balance, w.locked) for w in wallets)
    return {row.key: row for row in rows}


@dataclass
class BatchReads:
    # Of the users asked about, the active ones: the marks of their password, one per secret
    # key (accounts.credentials.password_marks_of_hash).
    active_users: dict[int, tuple[str, ...]] = field(default_factory=dict)
    markets: list[tuple[Any, ...]] = field(default_factory=list)  # MARKET_FIELDS
    ttx_asset_id: int | None = None  # read with the markets (None: no market asked, or no asset)
    wallets: dict[WalletKey, WalletRow] = field(default_factory=dict)  # the existing ones, locked
    holdings: dict[int, Decimal] = field(default_factory=dict)  # TTX balance per user, every bucket
    client_ids: list[tuple[int, int, str, Any]] = field(default_factory=list)  # _CLIENT_ID_FIELDS
    # The reference prices of the rate markets asked about (orders.engine.rates), by symbol;
    # one that does not exist is absent.
    rate_prices: dict[str, Decimal] = field(default_factory=dict)
    # New ids drawn ahead (PostgreSQL), ascending, per NEW_ID_MODELS.
    ids: list[list[int]] | None = None


@dataclass(frozen=True)
class BatchWanted:
    """What a batch reads. `users`: whose activity to check; `holders`: whose TTX holdings
    to sum; `client_ids`: (user, client order id); `rate_markets`: the symbols of the markets
    whose reference prices are dollar rates of quote assets; `new_ids`: how many new order ids and
    trade ids (and as many outbox ids) to draw from the sequences ahead, in the same round
    trip: the batch's write then needs no round trip of its own for them when they are
    enough (orders.sequencer.writer)."""

    users: Collection[int] = ()
    market_ids: Collection[int] = ()
    wallet_keys: Collection[WalletKey] = ()
    holders: Collection[int] = ()
    client_ids: Collection[tuple[int, str]] = ()
    rate_markets: Collection[str] = ()
    new_ids: tuple[int, int] = (0, 0)


def batch_reads(*, wanted: BatchWanted) -> BatchReads:
    """Read (and lock the wallets) in one round trip on PostgreSQL (with the BEGIN of a
    BatchTransaction)."""
    if connection.vendor != "postgresql":
        return _reads_orm(wanted=wanted)
    users, market_ids, wallet_keys = wanted.users, wanted.market_ids, wanted.wallet_keys
    holders, client_ids = wanted.holders, wanted.client_ids
    sql = _sql()
    reads = BatchReads()
    with statements_pipelined(unflushed=True):
        pending: list[tuple[str, Any]] = []
        if users:
            pending.append(("users", _send(sql["users"], [array_literal(sorted(users))])))
        if market_ids:
            pending.append(("markets", _send(sql["markets"], [settings.TTX_ASSET, array_literal(sorted(market_ids))])))
        locked = wallets_lock_sent(wallet_keys) if wallet_keys else None
        orders, trades = wanted.new_ids  # an outbox row per trade; no ids wanted: nothing sent
        drawn = ids_reserve(list(zip(NEW_ID_MODELS, (orders, trades, trades), strict=True)))
        if holders:
            pending.append(("holdings", _send(sql["holdings"], [settings.TTX_ASSET, array_literal(sorted(holders))])))
        if client_ids:
            owners, ids = sorted({u for u, _ in client_ids}), sorted({cid for _, cid in client_ids})
            pending.append(("client_ids", _send(sql["client_ids"], [array_literal(owners), array_literal(ids)])))
        if wanted.rate_markets:
            pending.append(("rate_prices", _send(sql["rate_prices"], [array_literal(sorted(wanted.rate_markets))])))
    # Read once the pipeline has ended: its Sync brings every answer back in one round trip
    # (a read inside it waits for the answers, then its end waits again for the Sync's).
    for kind, cursor in pending:
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if kind == "users":
            reads.active_users = {int(user): password_marks_of_hash(password) for user, password in rows}
        elif kind == "markets":
            reads.markets = [tuple(row[:-1]) for row in rows]
            reads.ttx_asset_id = None if not rows or rows[0][-1] is None else int(rows[0][-1])
        elif kind == "holdings":
            reads.holdings = {int(user): total for user, total in rows}
        elif kind == "rate_prices":
            reads.rate_prices = {str(symbol): price for symbol, price in rows}
        else:
            reads.client_ids = [(int(pk), int(user), str(cid), fp) for pk, user, cid, fp in rows]
    if locked is not None:
        reads.wallets = locked()
    reads.ids = drawn()
    return reads


def wallets_lock_sent(keys: Collection[WalletKey], *, nowait: bool = False) -> Callable[[], dict[WalletKey, WalletRow]]:
    """PostgreSQL: the existing wallets of these keys locked in id order, in one statement
    sent now (in a pipeline: with what else is queued) and read when the returned function
    is called (orders.locks.lock_wallets_by_key, without Django's raw query, which reads
    its columns before its rows and so cannot wait in a pipeline). `nowait`: a row another
    transaction holds fails the statement at once (lock_not_available) instead of waiting."""
    wanted = sorted(set(keys))
    columns = [array_literal(column) for column in zip(*wanted, strict=True)] if wanted else ["{}"] * 3
    cursor = _send(_sql()["wallets_nowait" if nowait else "wallets"], columns)

    def read() -> dict[WalletKey, WalletRow]:
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return {(row[1], row[2], row[3]): WalletRow(*row) for row in rows}

    return read


def wallets_created(*, keys: Collection[WalletKey], nowait: bool = False) -> dict[WalletKey, WalletRow]:
    """Wallets for keys that had none (a first trade or deposit in an asset): created (one
    created meanwhile by someone else is kept), then locked. Inside a pipeline too, and in
    a BatchTransaction (raw statements: bulk_create would open an atomic block)."""
    if connection.vendor != "postgresql":
        return wallet_rows(wallets_lock(keys=keys, nowait=nowait).values())
    now = timezone.now()
    table_insert(
        Wallet,
        fields=WALLET_CREATED_FIELDS,
        rows=[(user, asset, bucket, ZERO, ZERO, now) for user, asset, bucket in sorted(keys)],
        returning=False,
        conflicts_ignored=True,
    )
    return wallets_lock_sent(keys, nowait=nowait)()


def _send(sql: str, params: list[Any]) -> Any:
    cursor = connections[DEFAULT_DB_ALIAS].cursor()
    cursor.execute(sql, params)
    return cursor


def _reads_orm(*, wanted: BatchWanted) -> BatchReads:
    users, market_ids, wallet_keys = wanted.users, wanted.market_ids, wanted.wallet_keys
    holders, client_ids = wanted.holders, wanted.client_ids
    reads = BatchReads()
    if users:
        model = get_user_model()
        active = model.objects.filter(pk__in=users, is_active=True).values_list("pk", "password")
        reads.active_users = {int(user): password_marks_of_hash(password) for user, password in active}
    if market_ids:
        ttx = Asset.objects.filter(symbol=settings.TTX_ASSET).values("pk")[:1]
        rows = list(
            Market.objects.filter(pk__in=market_ids)
            .annotate(ttx=Subquery(ttx))
            .values_list(*MARKET_FIELDS, "ttx")
            .order_by()
        )
        reads.markets = [tuple(row[:-1]) for row in rows]
        reads.ttx_asset_id = None if not rows or rows[0][-1] is None else int(rows[0][-1])
    if wallet_keys:
        reads.wallets = wallet_rows(lock_wallets_by_key(keys=wallet_keys).values())
    if holders:
        sums = money_sums(
            Wallet.objects.filter(user_id__in=holders, asset__symbol=settings.TTX_ASSET),
            group_by="user_id",
            fields=["balance"],
        )
        reads.holdings = {int(user): totals[0] for user, totals in sums.items()}
    if client_ids:
        reads.client_ids = [
            (int(pk), int(user), str(cid), fp)
            for pk, user, cid, fp in Order.objects.filter(
                user_id__in={user for user, _ in client_ids}, client_order_id__in={cid for _, cid in client_ids}
            ).values_list(*_CLIENT_ID_FIELDS)
        ]
    if wanted.rate_markets:
        reads.rate_prices = dict(
            Market.objects.filter(symbol__in=sorted(wanted.rate_markets)).values_list("symbol", "reference_price")
        )
    return reads


WALLET_KEY_FIELDS = ("user", "asset", "bucket")  # a WalletKey's order


def _column(model: Any, name: str) -> str:
    return str(cast("Field[Any, Any]", model._meta.get_field(name)).column)


def _db_type(model: Any, name: str) -> str:
    return str(cast("Field[Any, Any]", model._meta.get_field(name)).db_type(connection))


def _wallet_columns() -> str:
    """WalletRow's columns, quoted, in its fields' order (its fields are the model's attnames)."""
    pk = str(cast("Field[Any, Any]", Wallet._meta.pk).column)
    return ", ".join(q(pk if f.name == "pk" else _column(Wallet, f.name)) for f in fields(WalletRow))


_SQL: dict[str, str] = {}


def _sql() -> dict[str, str]:
    if not _SQL:
        user_model = get_user_model()
        users = q(user_model._meta.db_table)
        pk = q(str(cast("Field[Any, Any]", user_model._meta.pk).column))
        market, asset, wallet, order = (q(m._meta.db_table) for m in (Market, Asset, Wallet, Order))

        def columns(model: Any, names: tuple[str, ...]) -> str:
            return ", ".join(q(model._meta.get_field(name).column) for name in names)

        ttx = f"(SELECT {q('id')} FROM {asset} WHERE {q('symbol')} = %s)"  # noqa: S608
        wallets = (
            f"SELECT {_wallet_columns()} FROM {wallet} "  # noqa: S608
            f"WHERE ({', '.join(q(_column(Wallet, name)) for name in WALLET_KEY_FIELDS)}) IN "
            f"(SELECT * FROM unnest({', '.join(f'%s::{_db_type(Wallet, name)}[]' for name in WALLET_KEY_FIELDS)})) "
            f"ORDER BY {q('id')} FOR UPDATE"
        )
        _SQL.update(
            {
                "users": f"SELECT {pk}, {q('password')} FROM {users} "  # noqa: S608
                f"WHERE {pk} = ANY(%s::bigint[]) AND {q('is_active')}",
                "markets": f"SELECT {columns(Market, MARKET_FIELDS)}, {ttx} FROM {market} "  # noqa: S608
                f"WHERE {q('id')} = ANY(%s::bigint[])",
                # The keys as three arrays (user, asset, bucket): one statement text whatever
                # their number, so psycopg converts it once (a VALUES list of three
                # parameters per key was parsed again at every batch). Locked in id order.
                "wallets": wallets,
                "wallets_nowait": f"{wallets} NOWAIT",
                "holdings": f"SELECT {q('user_id')}, sum({q('balance')}) FROM {wallet} "  # noqa: S608
                f"WHERE {q('asset_id')} = {ttx} AND {q('user_id')} = ANY(%s::bigint[]) GROUP BY {q('user_id')}",
                "client_ids": f"SELECT {columns(Order, _CLIENT_ID_FIELDS)} FROM {order} "  # noqa: S608
                f"WHERE {q('user_id')} = ANY(%s::bigint[]) AND {q('client_order_id')} = ANY(%s::varchar[])",
                "rate_prices": f"SELECT {columns(Market, ('symbol', 'reference_price'))} FROM {market} "  # noqa: S608
                f"WHERE {q(_column(Market, 'symbol'))} = ANY(%s::varchar[])",
            }
        )
    return _SQL
