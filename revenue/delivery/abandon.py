"""Giving up on a batch stuck in `submitted`: what the database and the chain must show
first (staff: revenue.staff_actions.delivery_batch_abandon; docs/delivery.md,
"Abandoning a stuck batch").

Read only; nothing here writes. A batch may be abandoned when it is in flight, not seen
mined, not foreign, of the active deployment, and the node shows that

- no signed version of it is mined (a receipt, paying or reverted: the worker records it);
- the reserve holds none of its items as paid (by whatever transaction: a same-nonce
  replacement signed elsewhere included; the worker's scan records who paid);
- and either its nonce was used, at or below the final block, by a transaction that is
  none of its versions (``nonce_used``: no version of it can ever be mined), or its nonce
  is unused and the node knows no version of it, neither mined nor in its pool
  (``tx_gone``: the next batch the worker sends takes that nonce).

The nonces are read before the receipts, and the receipts before the pool: a version
mined between two reads shows in the later one. Even so, should a version of an abandoned
batch be mined after all (its signed bytes rebroadcast by someone else before its nonce
is used), the reserve pays each item once whatever transaction carries it, and the scan
records that version as the batch's payment (revenue.delivery.scan); the events' own
copy in a newer batch is refused and refunded on-chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from web3 import Web3

from revenue.chain.client import items_paid_among, node_chain_id, receipt_or_none
from revenue.chain.runtime import final_block_read
from revenue.delivery.broadcast import tx_known
from revenue.delivery.cycle import chain_call
from revenue.models import DeliveryBatch, DeliveryBatchStatus

NONCE_USED = "nonce_used"
TX_GONE = "tx_gone"


@dataclass(frozen=True, slots=True)
class AbandonVerdict:
    allowed: bool
    grounds: str  # allowed: nonce_used | tx_gone; refused: what stopped it
    detail: str  # the evidence, in words, for the operator and the audit row

    @classmethod
    def refused(cls, grounds: str, detail: str) -> AbandonVerdict:
        return cls(allowed=False, grounds=grounds, detail=detail)


def delivery_batch_abandon_refusal(*, batch: DeliveryBatch) -> AbandonVerdict | None:
    """What the database alone refuses (no node asked), or None."""
    if batch.status != DeliveryBatchStatus.SUBMITTED:
        return AbandonVerdict.refused("not_in_flight", f"batch {batch.pk} is {batch.status}, not in flight")
    if batch.block_number is not None:
        return AbandonVerdict.refused(
            "mined", f"batch {batch.pk} is mined in block {batch.block_number}: it waits for its confirmations"
        )
    if batch.foreign:
        return AbandonVerdict.refused("foreign", f"batch {batch.pk} is a payment found on-chain, not sent by us")
    if not batch.deployment.active:
        return AbandonVerdict.refused("not_active", f"batch {batch.pk} is of a deployment no longer active")
    if batch.deployment.embedded:
        return AbandonVerdict.refused(
            "embedded",
            "the embedded chain lives inside the delivery worker: no other process can check it "
            "(its batches are mined at once, and superseded when the worker restarts)",
        )
    if not settings.WEB3_PROVIDER_URI:
        return AbandonVerdict.refused(
            "no_node", "this process has no WEB3_PROVIDER_URI: it cannot ask the chain node (set it as the worker's)"
        )
    return None


def delivery_batch_abandon_verdict(*, w3: Web3, batch: DeliveryBatch) -> AbandonVerdict:
    """What the chain says (``batch`` passed delivery_batch_abandon_refusal). Connection
    failures raise ChainUnavailable."""
    deployment = batch.deployment
    chain_id = node_chain_id(w3)
    if chain_id != deployment.chain_id:
        return AbandonVerdict.refused(
            "wrong_chain", f"the node is on chain {chain_id}; batch {batch.pk} was sent on chain {deployment.chain_id}"
        )
    signer, nonce = Web3.to_checksum_address(deployment.signer_address), batch.nonce
    head = int(chain_call(lambda: w3.eth.block_number))
    final = final_block_read(w3, head=head)
    used_final = final >= 0 and int(chain_call(w3.eth.get_transaction_count, signer, final)) > nonce
    used = used_final or int(chain_call(w3.eth.get_transaction_count, signer, "latest")) > nonce
    for tx_hash in batch.tx_hashes:
        receipt = receipt_or_none(w3, tx_hash)
        if receipt is not None:
            outcome = "paying" if receipt["status"] == 1 else "reverted"
            return AbandonVerdict.refused(
                "mined",
                f"its version {tx_hash} is mined in block {receipt['blockNumber']} ({outcome}): "
                "the delivery worker records what it did",
            )
    # with the items an earlier version carried that its latest left out (for funds): that
    # version may have paid them
    carried = [int(item) for item in [*batch.item_ids, *batch.left_out_item_ids]]
    paid = items_paid_among(w3, deployment.contract_address, carried)
    if paid:
        return AbandonVerdict.refused(
            "paid",
            f"the reserve holds {len(paid)} of its {len(carried)} items as paid already "
            f"({', '.join(map(str, paid[:10]))}{', ...' if len(paid) > 10 else ''}): "
            "the delivery worker's scan records who paid them",
        )
    if used_final:
        return AbandonVerdict(
            allowed=True,
            grounds=NONCE_USED,
            detail=f"nonce {nonce} of {signer} was used at or below the final block {final} by a transaction "
            "that is none of its versions: no version of it can be mined any more",
        )
    if used:
        return AbandonVerdict.refused(
            "nonce_not_final",
            f"nonce {nonce} was used by another transaction in a block not final yet (final block {final}, "
            f"head {head}): try again once it is final, or let the delivery worker rebuild the batch",
        )
    known = [tx_hash for tx_hash in batch.tx_hashes if tx_known(w3, tx_hash)]
    if known:
        return AbandonVerdict.refused(
            "pending",
            f"its version {known[-1]} is in the node's pool and may still be mined: let the delivery worker "
            "replace it (raise DELIVERY_MAX_FEE_PER_GAS_WEI if fees are above it), or wait for it to be dropped",
        )
    return AbandonVerdict(
        allowed=True,
        grounds=TX_GONE,
        detail=f"no version of it is mined or known to the node, and nonce {nonce} is unused: "
        "the next batch sent takes that nonce",
    )
