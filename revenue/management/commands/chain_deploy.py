"""Deploy the HolderReserve contract to the configured node and make it the active one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from revenue.chain.client import ChainError, dev_signer_fund
from revenue.chain.runtime import (
    DEV_CHAIN_IDS,
    chain_context_reset,
    chain_deploy,
    chain_deploy_check,
    node_connect,
    signer_key_file_write,
    signer_load,
)
from revenue.delivery.lock import delivery_sender_lock_within
from revenue.models import ChainDeployment

# How long a redeploy waits for a delivery cycle in progress to end before it gives up.
LOCK_WAIT_SECONDS = 30.0


class Command(BaseCommand):
    help = (
        "Deploy HolderReserve to WEB3_PROVIDER_URI and record it as the active deployment of that chain. "
        "--dev (chain id 31337 only) generates and funds a fresh signer and writes its key to "
        "CHAIN_SIGNER_KEY_FILE (var/chain-signer.key); otherwise the signer is CHAIN_SIGNER_PRIVATE_KEY."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dev", action="store_true", help="dev chains: fresh funded signer key in the key file")
        parser.add_argument(
            "--replace",
            action="store_true",
            help=(
                "supersede the chain's active deployment by a new reserve (a new signer key, a contract upgrade, "
                "a node that lost its state); without it a chain that has one is refused"
            ),
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help=(
                "supersede the active deployment even with batches in flight not mined (their events return "
                "to pending); a batch already mined is never superseded: wait for its confirmations"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        uri = settings.WEB3_PROVIDER_URI
        if not uri:
            raise CommandError(
                "WEB3_PROVIDER_URI is empty: the embedded chain is deployed by the delivery worker itself"
            )
        # As the only sender, from the check to the record: a batch the worker sent after
        # the check (the deployment takes seconds) was superseded, its events returned to
        # pending while its transaction paid them on the old reserve, and paid again on the new.
        with delivery_sender_lock_within(LOCK_WAIT_SECONDS) as acquired:
            if not acquired:
                raise CommandError(
                    f"the delivery worker is in a cycle (it held the delivery lock for {LOCK_WAIT_SECONDS:g} s): "
                    "nothing was deployed; run this again"
                )
            self._deploy(uri, dev=options["dev"], force=options["force"], replace=options["replace"])

    def _deploy(self, uri: str, *, dev: bool, force: bool, replace: bool) -> None:
        try:
            w3, chain_id = node_connect(uri)
            # Run again by mistake (a copied runbook, a retried release job), it made a second
            # reserve without a word: every holder share from then on went to the new contract.
            active = ChainDeployment.objects.filter(chain_id=chain_id, active=True).first()
            if active is not None and not replace:
                raise CommandError(
                    f"chain {chain_id} already has an active HolderReserve, {active.contract_address} (signer "
                    f"{active.signer_address}, deployed {active.deployed_at:%Y-%m-%d %H:%M} UTC): nothing was "
                    "deployed. To supersede it with a new reserve (holder shares go there from then on), pass "
                    '--replace (docs/delivery.md, "Chain runtime and deployments")'
                )
            if dev:
                if chain_id not in DEV_CHAIN_IDS:
                    raise CommandError(f"--dev is for dev chains only (chain id 31337), not chain {chain_id}")
                chain_deploy_check(w3=w3, chain_id=chain_id, force=force)
                signer = dev_signer_fund(w3, amount_wei=settings.CHAIN_DEV_FUNDING_WEI)
                # Written before the deployment it will sign for: a key is never lost. Never printed.
                key_file = Path(settings.CHAIN_SIGNER_KEY_FILE)
                signer_key_file_write(signer, path=key_file)
                self.stdout.write(f"dev signer key written to {key_file} (mode 600)")
            else:
                signer = signer_load(chain_id=chain_id)
            deployment = chain_deploy(w3=w3, signer=signer, force=force)
        except ChainError as exc:
            raise CommandError(str(exc)) from exc
        chain_context_reset()
        self.stdout.write(
            self.style.SUCCESS(
                f"HolderReserve {deployment.contract_address} deployed on chain {chain_id} "
                f"(signer {deployment.signer_address}, block {deployment.deployed_block})"
            )
        )
