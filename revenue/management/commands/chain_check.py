"""manage.py chain_check: the contract check of the production topology (scripts/serve).

Reaches WEB3_PROVIDER_URI and fails, saying what to do, unless delivery can run: the node
answers, the active HolderReserve deployment of its chain is in the database, the signer
(CHAIN_SIGNER_PRIVATE_KEY, or a dev chain's key file) is that deployment's, the contract
has this version's code, is not paused, accepts the signer, and the signer holds ether.
Then the ids the reserve paid that the database never gave (a database restored from a
backup older than the chain) are skipped: no new event or bundle is given one of them
(revenue.delivery.scan.chain_paid_ids_skip)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from web3 import Web3

from revenue.chain.client import contract_health
from revenue.chain.errors import ChainError
from revenue.chain.runtime import chain_context_get
from revenue.delivery.scan import chain_paid_ids_skip


class Command(BaseCommand):
    help = "Check the chain node, the active HolderReserve deployment and the signer before serving."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.WEB3_PROVIDER_URI:
            raise CommandError("WEB3_PROVIDER_URI is empty: the production topology delivers through a chain node")
        try:
            context = chain_context_get()
            health = contract_health(context.w3, context.contract_address, context.signer_address)
            balance = int(context.w3.eth.get_balance(Web3.to_checksum_address(context.signer_address)))
        except ChainError as exc:
            raise CommandError(f"chain check failed: {exc}") from exc
        fault = health.fault()
        if fault is not None:
            raise CommandError(f"chain check failed: {fault}")
        if balance <= 0:
            raise CommandError(f"chain check failed: the signer {context.signer_address} holds no ether for gas")
        try:
            skipped = chain_paid_ids_skip(context)
        except ChainError as exc:
            raise CommandError(f"chain check failed: {exc}") from exc
        if skipped:
            self.stdout.write(skipped.describe())
        self.stdout.write(
            f"chain {context.chain_id}: HolderReserve {context.contract_address} ready, "
            f"signer {context.signer_address} allowed, balance {balance} wei"
        )
