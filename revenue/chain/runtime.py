"""The process-wide chain context of the delivery worker: node, signer and contract.

Unlike the rest of ``revenue.chain`` this module is Django-aware on purpose: it is the
one place that turns settings and ``ChainDeployment`` rows into the explicit arguments
the framework-free client takes.

- Embedded (``WEB3_PROVIDER_URI`` empty): an in-process eth-tester chain that lives in
  the worker process. On first use it funds a fresh signer, deploys the reserve and
  records an embedded ``ChainDeployment``. The chain restarts empty with every process,
  so that new deployment supersedes the previous one (whose unconfirmed batches can never
  confirm: their events go back to pending). Only the delivery worker may call this in
  embedded mode; any other process would create (and activate) a chain of its own.
- A node (``WEB3_PROVIDER_URI=http://...``): the signer is ``CHAIN_SIGNER_PRIVATE_KEY``,
  or on dev chains (chain id 31337) the key file written by ``manage.py chain_deploy
  --dev``; the contract is the active ``ChainDeployment`` of the node's chain id.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from eth_account.signers.local import LocalAccount
from web3 import Web3

from revenue.chain.client import (
    ChainUnavailable,
    OperatorFault,
    PauseCause,
    connect,
    deploy_reserve,
    dev_signer_fund,
    finalized_block_number,
    is_connection_failure,
    signer_from_key,
)
from revenue.delivery.transitions import deployment_batches_supersede
from revenue.models import ChainDeployment, DeliveryBatch, DeliveryBatchStatus

logger = logging.getLogger("revenue.chain")

DEV_CHAIN_IDS = frozenset({31337})  # anvil / hardhat: the only chains a key file may sign for
EMBEDDED_FUNDING_WEI = 10**23


class ChainNotConfigured(OperatorFault):
    """No signer or no deployed contract for the configured node: an operator must act."""

    def __init__(self, detail: str, cause: PauseCause = PauseCause.NOT_CONFIGURED) -> None:
        super().__init__(cause, detail)


@dataclass(frozen=True, repr=False)
class ChainContext:
    w3: Web3
    signer: LocalAccount
    contract_address: str
    chain_id: int
    deployment_id: int
    embedded: bool
    provider_uri: str

    @property
    def signer_address(self) -> str:
        return str(self.signer.address)

    def __repr__(self) -> str:  # never the key
        return f"ChainContext(chain_id={self.chain_id}, contract={self.contract_address}, signer={self.signer_address})"


_lock = threading.Lock()
_context: ChainContext | None = None


def chain_context_get() -> ChainContext:
    """The delivery context of this process, (re)built when missing, when the settings
    changed, or when its deployment is no longer the active one."""
    global _context
    with _lock:
        uri = settings.WEB3_PROVIDER_URI or ""
        current = _context
        if current is not None and current.provider_uri == uri and _still_active(current):
            return current
        _context = _embedded_context() if not uri else _node_context(uri)
        return _context


def chain_context_reset() -> None:
    """Forget the cached context (tests; a worker after `chain_deploy` picks it up by itself)."""
    global _context
    with _lock:
        _context = None


def _still_active(context: ChainContext) -> bool:

    active = (
        ChainDeployment.objects.filter(chain_id=context.chain_id, active=True)
        .values_list("pk", "signer_address")
        .first()
    )
    return active is not None and active[0] == context.deployment_id and active[1] == context.signer_address


# --------------------------------------------------------------------------- embedded


def _embedded_context() -> ChainContext:
    w3 = connect(provider_uri=None)
    signer = dev_signer_fund(w3, amount_wei=EMBEDDED_FUNDING_WEI)
    address = deploy_reserve(w3, signer=signer)
    chain_id = int(w3.eth.chain_id)
    deployment = chain_deployment_record(
        chain_id=chain_id,
        contract_address=address,
        signer_address=signer.address,
        deployed_block=int(w3.eth.block_number),
        embedded=True,
        supersede_live=True,
    )
    logger.info("embedded chain started", extra={"chain_id": chain_id, "contract": address})
    return ChainContext(
        w3=w3,
        signer=signer,
        contract_address=address,
        chain_id=chain_id,
        deployment_id=deployment.pk,
        embedded=True,
        provider_uri="",
    )


def embedded_block_mine(context: ChainContext) -> None:
    """A dev chain has no block time: mine one empty block so confirmations accrue."""
    if context.embedded:
        context.w3.provider.ethereum_tester.mine_blocks(1)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- node


def node_connect(uri: str) -> tuple[Web3, int]:
    w3 = connect(provider_uri=uri, timeout=float(settings.CHAIN_RPC_TIMEOUT_SECONDS))
    try:
        chain_id = int(w3.eth.chain_id)
    except Exception as exc:
        if is_connection_failure(exc):
            raise ChainUnavailable(f"chain node unavailable: {type(exc).__name__}: {exc}") from exc
        raise
    return w3, chain_id


def _node_context(uri: str) -> ChainContext:

    w3, chain_id = node_connect(uri)
    deployment = ChainDeployment.objects.filter(chain_id=chain_id, active=True).first()
    if deployment is None:
        elsewhere = sorted(
            ChainDeployment.objects.filter(active=True, embedded=False).values_list("chain_id", flat=True)
        )
        if elsewhere:
            raise ChainNotConfigured(
                f"the node at WEB3_PROVIDER_URI is on chain {chain_id}; the active reserve is on chain "
                f"{', '.join(map(str, elsewhere))}",
                cause=PauseCause.WRONG_CHAIN_ID,
            )
        raise ChainNotConfigured(f"no HolderReserve deployed on chain {chain_id}: run `manage.py chain_deploy`")
    signer = signer_load(chain_id=chain_id)
    if deployment.signer_address != signer.address:
        raise ChainNotConfigured(
            f"the configured signer {signer.address} is not the signer {deployment.signer_address} "
            f"of the active deployment on chain {chain_id}"
        )
    return ChainContext(
        w3=w3,
        signer=signer,
        contract_address=deployment.contract_address,
        chain_id=chain_id,
        deployment_id=deployment.pk,
        embedded=False,
        provider_uri=uri,
    )


def signer_load(*, chain_id: int) -> LocalAccount:
    """CHAIN_SIGNER_PRIVATE_KEY, else (dev chains only) the key file; never logged."""
    if settings.CHAIN_SIGNER_PRIVATE_KEY:
        return signer_from_key(settings.CHAIN_SIGNER_PRIVATE_KEY).account
    path = Path(settings.CHAIN_SIGNER_KEY_FILE)
    if chain_id in DEV_CHAIN_IDS and path.is_file():
        return signer_from_key(path.read_text()).account
    raise ChainNotConfigured(
        f"no signer for chain {chain_id}: set CHAIN_SIGNER_PRIVATE_KEY"
        + (" or run `manage.py chain_deploy --dev`" if chain_id in DEV_CHAIN_IDS else "")
    )


def signer_key_file_write(account: LocalAccount, *, path: Path) -> None:
    """Write a dev signer key readable by the owner only (atomically: no half-written key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("0x" + bytes(account.key).hex() + "\n")
    os.replace(temporary, path)


def chain_deploy_check(*, w3: Web3, chain_id: int, force: bool) -> None:
    """Refuse to supersede a deployment with batches in flight: they may still be mined
    on the old contract, and their events would be paid again on the new one. A batch
    already mined there is refused even with ``force``: its events are paid (superseding
    it would return them to pending and pay them again); it confirms within blocks. So is a
    confirmed batch not final yet: a reorg can still take its payment back, and the worker
    re-checks only the active deployment's payments (its events would stay `delivered`,
    unpaid). A batch
    staff abandoned while its nonce was unused (revenue.delivery.abandon, ``tx_gone``)
    counts as in flight until the signer's nonce passed it at the final block: its signed
    bytes could still pay on the old contract."""

    batches = DeliveryBatch.objects.filter(
        deployment__chain_id=chain_id, deployment__active=True, status=DeliveryBatchStatus.SUBMITTED
    )
    mined = batches.filter(block_number__isnull=False).count()
    if mined:
        raise ChainNotConfigured(
            f"{mined} batch(es) of the active deployment are mined and wait for their confirmations: their "
            "events are paid on the current reserve; let the delivery worker confirm them, then deploy "
            "(--force never returns the events of a mined batch)"
        )
    unsettled = _confirmed_not_final(w3, chain_id=chain_id)
    if unsettled:
        raise ChainNotConfigured(
            f"{unsettled} confirmed batch(es) of the active deployment are not final yet: a reorg can still take "
            "their payments back, and only the active deployment's payments are re-checked; deploy once they "
            "are final (--force does not skip this)"
        )
    in_flight = batches.count() + _abandoned_still_minable(w3, chain_id=chain_id)
    if in_flight and not force:
        raise ChainNotConfigured(
            f"{in_flight} batch(es) of the active deployment are still in flight: wait for them to confirm, "
            "or pass --force to return their events to pending (the old contract may still receive them)"
        )


def _confirmed_not_final(w3: Web3, *, chain_id: int) -> int:
    """Confirmed batches of the active deployment whose block is above the node's final
    block: their events are `delivered`, and a reorg may still take the payment back. The
    worker re-checks them only while their deployment is the active one."""

    confirmed = DeliveryBatch.objects.filter(
        deployment__chain_id=chain_id,
        deployment__active=True,
        status=DeliveryBatchStatus.CONFIRMED,
        finalized_at__isnull=True,
    )
    if not confirmed.exists():
        return 0
    final = final_block_read(w3, head=int(w3.eth.block_number))
    return confirmed.filter(block_number__gt=final).count()


def _abandoned_still_minable(w3: Web3, *, chain_id: int) -> int:
    """Abandoned batches of the active deployment whose nonce the signer has not used at the
    final block: a version of them could still be mined."""

    abandoned = list(
        DeliveryBatch.objects.filter(
            deployment__chain_id=chain_id, deployment__active=True, status=DeliveryBatchStatus.ABANDONED
        ).values_list("nonce", "deployment__signer_address")
    )
    if not abandoned:
        return 0
    final = final_block_read(w3, head=int(w3.eth.block_number))
    used = {
        signer: int(w3.eth.get_transaction_count(Web3.to_checksum_address(signer), max(final, 0)))
        for signer in {signer for _, signer in abandoned}
    }
    return sum(1 for nonce, signer in abandoned if nonce >= used[signer])


def final_block_read(w3: Web3, *, head: int) -> int:
    """Every block at or below it is final: the node's ``finalized`` block, or
    CHAIN_FINALITY_DEPTH below ``head`` on nodes without that tag (or with
    CHAIN_FINALITY_USE_TAG off)."""
    final = finalized_block_number(w3) if settings.CHAIN_FINALITY_USE_TAG else None
    if final is None:
        final = head - settings.CHAIN_FINALITY_DEPTH + 1
    return final


def chain_deploy(*, w3: Web3, signer: LocalAccount, embedded: bool = False, force: bool = False) -> Any:
    """Deploy a reserve from ``signer`` and make it the active deployment of its chain."""

    chain_id = int(w3.eth.chain_id)
    chain_deploy_check(w3=w3, chain_id=chain_id, force=force)
    address = deploy_reserve(w3, signer=signer)
    deployment: ChainDeployment = chain_deployment_record(
        chain_id=chain_id,
        contract_address=address,
        signer_address=signer.address,
        deployed_block=int(w3.eth.block_number),
        embedded=embedded,
        supersede_live=True,
    )
    return deployment


# --------------------------------------------------------------------------- deployments


@transaction.atomic(durable=True)
def chain_deployment_record(
    *,
    chain_id: int,
    contract_address: str,
    signer_address: str,
    deployed_block: int,
    embedded: bool,
    supersede_live: bool,
    now: datetime | None = None,
) -> Any:
    """Record a new active deployment; the previous active one of the chain is superseded
    and its batches that never confirmed return their events to pending."""

    moment = now or timezone.now()
    previous = list(ChainDeployment.objects.select_for_update().filter(chain_id=chain_id, active=True).order_by("pk"))
    for old in previous:
        if supersede_live:
            deployment_batches_supersede(deployment_id=old.pk, now=moment)
        ChainDeployment.objects.filter(pk=old.pk).update(active=False, superseded_at=moment)
        logger.warning(
            "chain deployment superseded",
            extra={"chain_id": chain_id, "old_contract": old.contract_address, "new_contract": contract_address},
        )
    return ChainDeployment.objects.create(
        chain_id=chain_id,
        contract_address=contract_address,
        signer_address=signer_address,
        deployed_block=deployed_block,
        deployed_at=moment,
        embedded=embedded,
        active=True,
    )
