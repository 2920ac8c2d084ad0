"""Idempotent demo data (orders.services.demo): run at every `make run`, whatever the
last run left."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from orders.services.demo import demo_data_seed, demo_logins, demo_password


class Command(BaseCommand):
    help = "Create demo assets, markets, users, balances, house inventory and resting orders (safe to run again)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--print-logins", action="store_true", help="Only print the demo logins.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["print_logins"]:
            for username, role in demo_logins():
                self.stdout.write(f"    {username:<8} / {demo_password()}   ({role})")
            return
        result = demo_data_seed()
        skipped = ", ".join(f"{count} {code}" for code, count in sorted(result.skipped.items()))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {result.placed} resting orders placed, {result.present} from an earlier run"
                + (f", not placed: {skipped}" if skipped else "")
                + "."
            )
        )
