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


def seed(config: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from django.contrib.auth.models import Permission, User
    from rest_framework_simplejwt.tokens import AccessToken

    from bench.seed import seed_base, seed_pending_revenue_events

    base = seed_base(traders=int(config["traders"]), makers=0, password=secrets.token_urlsafe(16))
    staff = User.objects.create_user(
        username="reliability-staff", password=secrets.token_urlsafe(16), is_staff=True, email="staff@localhost"
    )
    # The ledger endpoint asks for it (orders.api.staff.LedgerApi).
    staff.user_permissions.add(Permission.objects.get(content_type__app_label="orders", codename="view_wallet"))
    users = {user.username: user for user in User.objects.filter(username__in=base.traders)}
    if config.get("revenue_events"):
        seed_pending_revenue_events(source_type="reliability", count=int(config["revenue_events"]))
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
