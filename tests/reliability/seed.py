"""Seeding of a reliability database, run as its own process with the platform's
(production) environment: `python -m tests.reliability.seed CONFIG.json RESULT.json`.

Reuses the benchmark's ledger-consistent seed (markets, funded traders, house inventory,
every balance backed by a deposit), adds a staff user, mints access tokens signed with
the server's key, and optionally inserts pending revenue events for delivery tests."""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any


def _revenue_events_insert(count: int) -> None:
    """`count` pending revenue events with varied amounts (split as revenue_split does:
    holder = floor(gross x 0.15, 8 dp)), and their streams' collected totals."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO revenue_revenueevent (
                stream_id, source_type, source_id, currency, gross_amount, net_amount, holder_share,
                reserve_share, description, metadata, created_at
            )
            SELECT g %% 10, 'reliability', g::text, 'USDT', gross, gross, floor(gross * 0.15 * 1e8) / 1e8,
                   gross - floor(gross * 0.15 * 1e8) / 1e8, 'Reliability event ' || g,
                   jsonb_build_object('timestamp', to_char(now() AT TIME ZONE 'UTC',
                                                           'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                                      'streamName', 'stream ' || (g %% 10),
                                      'correlationId', md5(g::text), 'onChainDeliveryStatus', 'pending',
                                      'retryAttempts', 0),
                   now()
            FROM (SELECT g, (1 + (g * 7919) %% 100000)::numeric / 1000 AS gross
                  FROM generate_series(1::bigint, %(count)s::bigint) AS g) AS rows
            ORDER BY g
            """,
            {"count": count},
        )
        cursor.execute(
            """
            UPDATE revenue_revenuestream s SET collected = s.collected + t.total
            FROM (SELECT stream_id, sum(gross_amount) AS total FROM revenue_revenueevent
                  WHERE source_type = 'reliability' GROUP BY stream_id) t
            WHERE s.id = t.stream_id
            """
        )


def seed(config: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from rest_framework_simplejwt.tokens import AccessToken

    from bench.seed import seed_base

    base = seed_base(traders=int(config["traders"]), makers=0, password=secrets.token_urlsafe(16))
    staff = User.objects.create_user(
        username="reliability-staff", password=secrets.token_urlsafe(16), is_staff=True, email="staff@localhost"
    )
    users = {user.username: user for user in User.objects.filter(username__in=base.traders)}
    if config.get("revenue_events"):
        _revenue_events_insert(int(config["revenue_events"]))
    return {
        "traders": [
            {"username": name, "id": users[name].pk, "token": str(AccessToken.for_user(users[name]))}
            for name in base.traders
        ],
        "staff_token": str(AccessToken.for_user(staff)),
        "markets": {symbol: market.pk for symbol, market in base.markets.items()},
    }


def main(argv: list[str]) -> int:
    with open(argv[1]) as handle:
        config = json.load(handle)
    result = seed(config)
    with open(argv[2], "w") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
