"""What the node and the contract say at the start of a delivery step, and the
operator-level faults that stop sending (revenue.chain.errors.PauseCause).

Read once per step: the head (number and hash), the final block, the signer's nonces
and balance, the fees, and the reserve's own view of the signer (code present, paused,
signer authorised). Faults that make even reading pointless (wrong chain, no contract)
raise at once; faults that only stop sending are returned by ``sending_fault``, so
confirmations of what is already mined keep being recorded meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from hexbytes import HexBytes

from revenue.chain.client import (
    ContractHealth,
    OperatorFault,
    PauseCause,
    contract_health,
    fees_for,
    node_chain_id,
    priority_fee_suggested,
)
from revenue.chain.runtime import ChainContext, final_block_read
from revenue.delivery.cycle import chain_call
from revenue.delivery.selectors import delivery_batch_gas_typical

DEFAULT_BATCH_GAS = 1_000_000  # before any batch was sent: about a full batch of 200 items


@dataclass(frozen=True, slots=True)
class ChainView:
    head: int
    head_hash: str
    final_block: int  # every block at or below it is final
    next_base_fee: int
    max_fee: int  # suggested for a transaction sent now
    priority_fee: int
    latest_nonce: int  # the signer's mined transactions
    balance: int
    contract: ContractHealth
    batch_gas: int  # what a full batch was given lately: the unit of the balance checks

    def confirmations(self, block_number: int) -> int:
        return max(0, self.head - block_number + 1)


def chain_view_read(context: ChainContext, *, previous: ChainView | None = None) -> ChainView:
    """Raises OperatorFault for a node on another chain or a reserve with no code. With
    ``previous`` (a later step of the same cycle) only what moves with every block and the
    chain id are read again: the reserve's view of the signer and the final block are kept."""
    w3 = context.w3
    signer = context.signer.address
    latest = chain_call(w3.eth.get_block, "latest")
    head = int(latest["number"])
    pending_block = chain_call(w3.eth.get_block, "pending")
    next_base_fee = int(pending_block.get("baseFeePerGas") or latest.get("baseFeePerGas") or 0)
    base_fee = max(next_base_fee, int(latest.get("baseFeePerGas") or 0))
    max_fee, priority = fees_for(base_fee=base_fee, priority=priority_fee_suggested(w3))
    # Every step, not once per cycle: a node switching chains mid-cycle (a balancer with a
    # backend on another chain) had the rest of the cycle read the other chain: the scan
    # took the reserve's payments back as reorged, the transaction manager failed their
    # batches (the other chain refusing the bytes) with an attempt of their events.
    chain_id = node_chain_id(w3)
    if chain_id != context.chain_id:
        raise OperatorFault(
            PauseCause.WRONG_CHAIN_ID,
            f"the node at WEB3_PROVIDER_URI is on chain {chain_id}; the reserve is on chain {context.chain_id}",
        )
    if previous is None:
        final = final_block_read(w3, head=head)
        health = contract_health(w3, context.contract_address, signer)
        if not (health.code_present and health.compatible):
            fault = health.fault()
            assert fault is not None  # noqa: S101  (no usable contract is a fault)
            raise fault
        batch_gas = delivery_batch_gas_typical() or DEFAULT_BATCH_GAS
    else:
        final, health, batch_gas = previous.final_block, previous.contract, previous.batch_gas
    return ChainView(
        head=head,
        head_hash=HexBytes(latest["hash"]).to_0x_hex(),
        final_block=max(-1, min(final, head)),
        next_base_fee=next_base_fee,
        max_fee=max_fee,
        priority_fee=priority,
        latest_nonce=int(chain_call(w3.eth.get_transaction_count, signer, "latest")),
        balance=int(chain_call(w3.eth.get_balance, signer)),
        contract=health,
        batch_gas=batch_gas,
    )


def fees_capped(view: ChainView) -> tuple[int, int]:
    """The fees of a new transaction: the suggestion, its max fee capped at
    DELIVERY_MAX_FEE_PER_GAS_WEI."""
    max_fee = min(view.max_fee, settings.DELIVERY_MAX_FEE_PER_GAS_WEI)
    return max_fee, min(view.priority_fee, max_fee)


def sending_fault(view: ChainView) -> OperatorFault | None:
    """Why no new batch may be sent now, if anything stops it."""
    fault = view.contract.fault()
    if fault is not None:
        return fault
    cap = settings.DELIVERY_MAX_FEE_PER_GAS_WEI
    if view.next_base_fee >= cap:
        return OperatorFault(
            PauseCause.FEES_ABOVE_CAP,
            f"the next block's base fee {view.next_base_fee} wei/gas is at or above DELIVERY_MAX_FEE_PER_GAS_WEI {cap}",
        )
    needed = gas_reserve(view)
    if view.balance < needed:
        return OperatorFault(
            PauseCause.INSUFFICIENT_FUNDS,
            f"the signer holds {view.balance} wei; a batch needs about {needed} wei of gas plus the shares it pays",
        )
    return None


def gas_reserve(view: ChainView) -> int:
    """What a batch's gas may cost at today's fees: below it nothing is sent (a pause); what
    the balance holds above it is what a batch may pay in shares."""
    max_fee, _ = fees_capped(view)
    return view.batch_gas * max_fee


def low_balance_threshold(view: ChainView) -> int:
    """Enough gas for DELIVERY_LOW_BALANCE_BATCHES batches at today's fees."""
    max_fee, _ = fees_capped(view)
    return settings.DELIVERY_LOW_BALANCE_BATCHES * view.batch_gas * max_fee
