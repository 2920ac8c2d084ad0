"""Fund the house's stock of one market (orders.services.wallets.house_stock_credit): the
only supported way to restock auto-fill; the staff credit refuses platform accounts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from orders.selectors.markets import market_get
from orders.services.wallets import house_stock_credit


class Command(BaseCommand):
    help = "Credit the house's stock of one market (its base or quote asset), recorded as a deposit."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--market", required=True, help="Market symbol, e.g. BTC-USDT.")
        parser.add_argument("--asset", required=True, help="The market's base or quote asset, e.g. BTC.")
        parser.add_argument("--amount", required=True, help="A positive decimal, at most 8 decimal places.")
        parser.add_argument("--actor", help="Username of the staff member ordering it (recorded on the deposit).")
        parser.add_argument(
            "--reference",
            help="This credit's own reference (a ticket number, a UUID): run again with it, nothing more is "
            "credited; the same reference with other figures is refused.",
        )
        parser.add_argument("--reason", help="Why it is credited (kept on the deposit, the audit trail).")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = None
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"], is_staff=True, is_active=True).first()
            if actor is None:
                raise CommandError(f"--actor: no active staff account {options['actor']!r}.")
        try:
            market = market_get(symbol=options["market"])
            wallet = house_stock_credit(
                market=market,
                asset_symbol=options["asset"],
                amount=options["amount"],
                actor=actor,
                reference=options["reference"],
                reason=options["reason"],
            )
        except ApplicationError as refused:
            details = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in (refused.fields or {}).items())
            raise CommandError(f"{refused.message} {details}".strip()) from refused
        self.stdout.write(
            self.style.SUCCESS(
                f"House stock of {market.symbol}: {wallet.balance:f} {wallet.asset.symbol} (bucket {wallet.bucket})."
            )
        )
