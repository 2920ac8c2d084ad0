"""Fast, ledger-consistent seeding of the benchmark database (Django set up by the caller).

Users, wallets and deposits are bulk-inserted (one password hash for all: the hasher is
deliberately slow); resting orders and revenue events are generated in SQL with
`generate_series`. Every balance has its deposit, so the admin ledger stays balanced:
the locks of seeded resting orders are credited to their owners (and recorded as
deposits) in the same statements that lock them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from orders.models import Asset, Deposit, Market, Wallet
from orders.services.markets import markets_ensure
from orders.system_accounts import fee_account_user_id, house_user_id
from revenue.delivery.metadata import Key

ASSETS = {
    "USDT": "Tether USD",
    "ETH": "Ether",
    "BTC": "Bitcoin",
    "DPS": "Depth test asset (small book)",
    "DPL": "Depth test asset (large book)",
    "ENG": "Engine start test asset",
}
# symbol: tick, step, min quantity, reference price
MARKETS = {
    "ETH-USDT": ("0.01", "0.0001", "0.0001", "2000.00"),
    "BTC-USDT": ("0.01", "0.00001", "0.00001", "60000.00"),
    "DPS-USDT": ("0.01", "0.0001", "0.0001", "100.00"),
    "DPL-USDT": ("0.01", "0.0001", "0.0001", "100.00"),
    "ENG-USDT": ("0.01", "0.0001", "0.0001", "100.00"),
}
TRADER_FUNDS = {
    "USDT": "1000000000",
    "ETH": "1000000",
    "BTC": "100000",
    "DPS": "100000000",
    "DPL": "100000000",
    "ENG": "100000000",
}
HOUSE_INVENTORY = {"ETH-USDT": ("1000", "10000000"), "BTC-USDT": ("100", "10000000")}
SEED_FINGERPRINT = "bench-seed"


@dataclass(frozen=True)
class BaseSeed:
    password: str
    traders: list[str]
    makers: list[int]  # user ids owning the seeded resting orders of the depth market
    taker: str
    markets: dict[str, Market]


def seed_base(*, traders: int, makers: int, password: str) -> BaseSeed:
    with transaction.atomic():
        markets = markets_ensure(assets=ASSETS, markets=MARKETS)
        assets = {asset.symbol: asset for asset in Asset.objects.filter(symbol__in=ASSETS)}
        hashed = make_password(password)
        trader_names = [f"bench-trader-{i:03d}" for i in range(traders)]
        maker_names = [f"bench-maker-{i:03d}" for i in range(makers)]
        taker_name = "bench-taker"
        User.objects.bulk_create(
            [
                User(username=name, password=hashed, email=f"{name}@localhost")
                for name in [*trader_names, *maker_names, taker_name]
            ]
        )
        ids = dict(User.objects.filter(username__startswith="bench-").values_list("username", "pk"))
        wallets: list[Wallet] = []
        deposits: list[Deposit] = []
        for name in [*trader_names, *maker_names, taker_name]:
            for symbol, amount in TRADER_FUNDS.items():
                wallets.append(Wallet(user_id=ids[name], asset=assets[symbol], bucket=0, balance=Decimal(amount)))
                deposits.append(Deposit(user_id=ids[name], asset=assets[symbol], bucket=0, amount=Decimal(amount)))
        house = house_user_id()
        fee_account_user_id()
        for symbol, (base_amount, quote_amount) in HOUSE_INVENTORY.items():
            market = markets[symbol]
            for asset, amount in ((market.base, base_amount), (market.quote, quote_amount)):
                wallets.append(Wallet(user_id=house, asset=asset, bucket=market.pk, balance=Decimal(amount)))
                deposits.append(Deposit(user_id=house, asset=asset, bucket=market.pk, amount=Decimal(amount)))
        Wallet.objects.bulk_create(wallets)
        Deposit.objects.bulk_create(deposits)
    return BaseSeed(
        password=password,
        traders=trader_names,
        makers=[ids[name] for name in maker_names],
        taker=taker_name,
        markets=markets,
    )


def seed_resting_orders(*, market: Market, maker_ids: list[int], first: int, count: int, per_level: int = 10) -> None:
    """Resting limit orders #first..#first+count-1 of the depth book: even numbers are asks
    at reference + tick x (1 + k // per_level), odd ones bids below the reference, quantity 1
    each, so the top of the book is the same whatever the depth. Their locks are exact
    (engine rules: a sell locks its quantity, a buy the rounded-up notional plus the
    rounded-down taker fee) and credited to the owners as deposits."""
    if count <= 0:
        return
    fingerprint = f"{SEED_FINGERPRINT}-{market.pk}-{first}"
    now = timezone.now()
    bps = int(settings.TAKER_FEE_BPS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH rows AS (
                SELECT g,
                       (%(makers)s::bigint[])[1 + (g / 2) %% cardinality(%(makers)s::bigint[])] AS user_id,
                       CASE WHEN g %% 2 = 0 THEN 'sell' ELSE 'buy' END AS side,
                       CASE WHEN g %% 2 = 0
                            THEN %(ref)s::numeric + %(tick)s::numeric * (1 + (g / 2) / %(per_level)s)
                            ELSE %(ref)s::numeric - %(tick)s::numeric * (1 + (g / 2) / %(per_level)s)
                       END AS price
                FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
            ), priced AS (
                SELECT *, ceil(price * 1e8) / 1e8 AS notional FROM rows
            )
            INSERT INTO orders_order (
                user_id, market_id, side, type, time_in_force, stp, price, quantity, filled_quantity,
                quote_filled, fee_paid, locked_amount, status, request_fingerprint, created_at, updated_at
            )
            SELECT user_id, %(market)s, side, 'limit', 'GTC', 'skip', price, 1, 0, 0, 0,
                   CASE WHEN side = 'sell' THEN 1
                        ELSE notional + floor(notional * %(bps)s / 10000 * 1e8) / 1e8 END,
                   'open', %(fingerprint)s, %(now)s, %(now)s
            FROM priced ORDER BY g
            """,
            {
                "makers": maker_ids,
                "ref": market.reference_price,
                "tick": market.price_tick,
                "per_level": per_level,
                "first": first,
                "last": first + count - 1,
                "market": market.pk,
                "bps": bps,
                "fingerprint": fingerprint,
                "now": now,
            },
        )
        cursor.execute(
            """
            INSERT INTO orders_orderevent (order_id, status, reason, at)
            SELECT id, 'open', NULL, created_at FROM orders_order WHERE request_fingerprint = %s ORDER BY id
            """,
            [fingerprint],
        )
        cursor.execute(
            """
            CREATE TEMP TABLE bench_locks ON COMMIT DROP AS
            SELECT o.user_id, CASE WHEN o.side = 'sell' THEN m.base_id ELSE m.quote_id END AS asset_id,
                   sum(o.locked_amount) AS amount
            FROM orders_order o JOIN orders_market m ON m.id = o.market_id
            WHERE o.request_fingerprint = %s GROUP BY 1, 2
            """,
            [fingerprint],
        )
        cursor.execute(
            """
            UPDATE orders_wallet w SET balance = w.balance + l.amount, locked = w.locked + l.amount, updated_at = %s
            FROM bench_locks l WHERE w.user_id = l.user_id AND w.asset_id = l.asset_id AND w.bucket = 0
            """,
            [now],
        )
        cursor.execute(
            """
            INSERT INTO orders_deposit (user_id, asset_id, bucket, amount, created_at)
            SELECT user_id, asset_id, 0, amount, %s FROM bench_locks
            """,
            [now],
        )


# The metadata document's keys, as SQL parameters (revenue.delivery.metadata owns them).
_KEYS = {
    "timestamp": Key.TIMESTAMP.value,
    "stream_name": Key.STREAM_NAME.value,
    "correlation_id": Key.CORRELATION_ID.value,
    "status": Key.STATUS.value,
    "attempts": Key.RETRY_ATTEMPTS.value,
    "last_error": Key.LAST_ERROR.value,
    "last_retry_at": Key.LAST_RETRY_AT.value,
    "next_retry_at": Key.NEXT_RETRY_AT.value,
    "tx_hash": Key.TX_HASH.value,
    "block_number": Key.BLOCK_NUMBER.value,
    "nonce": Key.NONCE.value,
}


def seed_revenue_events(*, count: int, failed: int, days: float = 7.0, failed_hours: float = 48.0) -> None:
    """`count` revenue events spread over the last `days` (ids grow with time), of which
    `failed` (every count/failed-th, all within the last `failed_hours`) failed delivery
    with 0-6 attempts (critical from 5), a next retry in the past or the future and a last
    error; the newest 0.5% are pending (some stale), 0.5% submitted, the rest delivered.
    Stream totals are raised by the events' gross amounts. The document's keys are
    revenue.delivery.metadata's."""
    step = max(count // max(failed, 1), 1)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH base AS (
                SELECT g,
                       g %% 10 AS stream_id,
                       (1 + (g * 7919) %% 100000)::numeric / 1000 AS gross,
                       CASE WHEN g %% %(step)s = 0 AND %(failed_n)s > 0 AND g / %(step)s <= %(failed_n)s
                            THEN now() - (random() * %(failed_hours)s) * interval '1 hour'
                            ELSE now() - ((%(count)s - g)::float8 / %(count)s * %(days)s) * interval '1 day'
                       END AS created_at,
                       CASE WHEN g %% %(step)s = 0 AND g / %(step)s <= %(failed_n)s
                            THEN CASE WHEN (g %% 7) >= 5 THEN 'critical' ELSE 'failed' END
                            WHEN g > %(count)s - %(count)s / 200 THEN 'pending'
                            WHEN g > %(count)s - %(count)s / 100 THEN 'submitted'
                            ELSE 'delivered' END AS status
                FROM generate_series(1::bigint, %(count)s::bigint) AS g
            )
            INSERT INTO revenue_revenueevent (
                stream_id, source_type, source_id, currency, gross_amount, net_amount, holder_share,
                reserve_share, description, metadata, created_at
            )
            SELECT stream_id, 'bench', g::text, 'USDT', gross, gross, floor(gross * 0.15 * 1e8) / 1e8,
                   gross - floor(gross * 0.15 * 1e8) / 1e8, 'Benchmark event ' || g,
                   jsonb_build_object(
                       %(timestamp)s, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                       %(stream_name)s, 'stream ' || stream_id,
                       %(correlation_id)s, md5(g::text),
                       %(status)s, status,
                       %(attempts)s, CASE WHEN status IN ('failed', 'critical') THEN g %% 7 ELSE 0 END
                   ) || CASE
                       WHEN status = 'failed' THEN jsonb_build_object(
                           %(last_error)s, 'transient: chain node unavailable (bench ' || g || ')',
                           %(last_retry_at)s, to_char((created_at + interval '1 minute') AT TIME ZONE 'UTC',
                                                      'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                           %(next_retry_at)s, to_char((now() + ((g %% 3) - 1) * interval '30 minutes')
                                                      AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
                       WHEN status = 'critical' THEN jsonb_build_object(
                           %(last_error)s, 'fatal: reverted on-chain (bench ' || g || ')')
                       WHEN status = 'delivered' THEN jsonb_build_object(
                           %(tx_hash)s, '0x' || md5(g::text) || md5((g + 1)::text), %(block_number)s, g)
                       WHEN status = 'submitted' THEN jsonb_build_object(
                           %(tx_hash)s, '0x' || md5(g::text) || md5((g + 1)::text), %(nonce)s, g)
                       ELSE '{}'::jsonb END,
                   created_at
            FROM base ORDER BY g
            """,
            {
                "count": count,
                "step": step,
                "failed_n": failed,
                "days": days,
                "failed_hours": failed_hours,
                **_KEYS,
            },
        )
        cursor.execute(
            """
            UPDATE revenue_revenuestream s SET collected = s.collected + t.total
            FROM (SELECT stream_id, sum(gross_amount) AS total FROM revenue_revenueevent
                  WHERE source_type = 'bench' GROUP BY stream_id) t
            WHERE s.id = t.stream_id
            """
        )


def seed_pending_revenue_events(*, source_type: str, count: int) -> None:
    """`count` pending revenue events of `source_type` (source ids 1..count) with varied
    amounts of 1 to 101 USD (every holder share worth paying on its own: none is dust),
    split as revenue_split does (holder = floor(gross x 0.15, 8 dp)), added to their
    streams' collected totals: what the delivery has to send."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO revenue_revenueevent (
                stream_id, source_type, source_id, currency, gross_amount, net_amount, holder_share,
                reserve_share, description, metadata, created_at
            )
            SELECT g %% 10, %(source)s, g::text, 'USDT', gross, gross, floor(gross * 0.15 * 1e8) / 1e8,
                   gross - floor(gross * 0.15 * 1e8) / 1e8, 'Seeded event ' || g,
                   jsonb_build_object(%(timestamp)s, to_char(now() AT TIME ZONE 'UTC',
                                                             'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                                      %(stream_name)s, 'stream ' || (g %% 10),
                                      %(correlation_id)s, md5(g::text), %(status)s, 'pending',
                                      %(attempts)s, 0),
                   now()
            FROM (SELECT g, (1000 + (g * 7919) %% 100000)::numeric / 1000 AS gross
                  FROM generate_series(1::bigint, %(count)s::bigint) AS g) AS rows
            ORDER BY g
            """,
            {"source": source_type, "count": count, **_KEYS},
        )
        cursor.execute(
            """
            UPDATE revenue_revenuestream s SET collected = s.collected + t.total
            FROM (SELECT stream_id, sum(gross_amount) AS total FROM revenue_revenueevent
                  WHERE source_type = %(source)s GROUP BY stream_id) t
            WHERE s.id = t.stream_id
            """,
            {"source": source_type},
        )


def vacuum_analyze(*tables: str) -> None:
    """What autovacuum would have done by the time such a table is queried."""
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")


def seed_pending_stops(*, market: Market, maker_ids: list[int], count: int) -> None:
    """`count` pending sell stop-losses far below the reference (they never fire), quantity
    1, each locking its base; the locks credited as deposits, so the ledger stays balanced."""
    if count <= 0:
        return
    fingerprint = f"{SEED_FINGERPRINT}-stops-{market.pk}"
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO orders_order (
                user_id, market_id, side, type, time_in_force, stp, stop_price, quantity, filled_quantity,
                quote_filled, fee_paid, locked_amount, status, request_fingerprint, created_at, updated_at
            )
            SELECT (%(makers)s::bigint[])[1 + g %% cardinality(%(makers)s::bigint[])], %(market)s, 'sell',
                   'stop_loss', 'IOC', 'skip', %(tick)s::numeric * (1 + g %% 1000), 1, 0, 0, 0, 1,
                   'pending_trigger', %(fingerprint)s, %(now)s, %(now)s
            FROM generate_series(1, %(count)s) AS g ORDER BY g
            """,
            {
                "makers": maker_ids,
                "market": market.pk,
                "tick": market.price_tick,
                "count": count,
                "fingerprint": fingerprint,
                "now": now,
            },
        )
        cursor.execute(
            """
            INSERT INTO orders_orderevent (order_id, status, reason, at)
            SELECT id, 'pending_trigger', NULL, created_at FROM orders_order WHERE request_fingerprint = %s
            """,
            [fingerprint],
        )
        cursor.execute(
            """
            CREATE TEMP TABLE bench_stop_locks ON COMMIT DROP AS
            SELECT user_id, count(*)::numeric AS amount FROM orders_order WHERE request_fingerprint = %s GROUP BY 1
            """,
            [fingerprint],
        )
        cursor.execute(
            """
            UPDATE orders_wallet w SET balance = w.balance + l.amount, locked = w.locked + l.amount, updated_at = %s
            FROM bench_stop_locks l WHERE w.user_id = l.user_id AND w.asset_id = %s AND w.bucket = 0
            """,
            [now, market.base_id],
        )
        cursor.execute(
            "INSERT INTO orders_deposit (user_id, asset_id, bucket, amount, created_at) "
            "SELECT user_id, %s, 0, amount, %s FROM bench_stop_locks",
            [market.base_id, now],
        )
