"""3. Holder-share delivery to anvil: batched versus one transaction per event, on the
`revenue.chain.client` primitives (no Django), in its own process so its peak RSS is
the delivering process's.

`python -m bench.delivery CONFIG.json RESULT.json`. Each transaction goes through the
whole sender loop a delivery service runs: fees, build (gas estimate), local signing,
broadcast, receipt. A warm-up batch touching every stream first puts the contract in
its steady state (no zero-to-non-zero storage writes in the measured transactions)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from decimal import Decimal
from typing import Any

from bench.infra import vm_hwm_mb

ETH_USD = Decimal("2000")
FUNDING_WEI = 10**24


def _items(first_event_id: int, count: int) -> list[Any]:
    from revenue.chain.client import DeliveryItem, usd_to_wei

    items = []
    for event_id in range(first_event_id, first_event_id + count):
        holder_share_usd = Decimal(1 + (event_id * 7919) % 100_000) / 1000 * Decimal("0.15")
        items.append(
            DeliveryItem(
                item_id=event_id,
                stream_id=event_id % 10,
                amount_wei=usd_to_wei(holder_share_usd, eth_usd_price=ETH_USD),
            )
        )
    return items


class Sender:
    def __init__(self, uri: str) -> None:
        from revenue.chain.client import connect, deploy_reserve, dev_signer_fund

        self.w3 = connect(provider_uri=uri, timeout=60)
        self.signer = dev_signer_fund(self.w3, amount_wei=FUNDING_WEI)
        self.address = deploy_reserve(self.w3, signer=self.signer)
        self.nonce = int(self.w3.eth.get_transaction_count(self.signer.address, "pending"))
        self.delivered = 0
        self.next_event_id = 1

    def deliver(self, count: int) -> int:
        """One `deliver` transaction of `count` new events, mined; returns its gas used."""
        from revenue.chain.client import build_delivery_tx, send_signed, sign_tx, suggest_fees, wait_for_receipt

        items = _items(self.next_event_id, count)
        max_fee, priority = suggest_fees(self.w3)
        tx = build_delivery_tx(
            self.w3,
            contract_address=self.address,
            signer_address=self.signer.address,
            items=items,
            nonce=self.nonce,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=priority,
        )
        tx_hash = send_signed(self.w3, sign_tx(self.signer, tx))
        receipt = wait_for_receipt(self.w3, tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise RuntimeError(f"delivery transaction {tx_hash} reverted")
        self.nonce += 1
        self.delivered += count
        self.next_event_id += count
        return int(receipt["gasUsed"])


def run(config: dict[str, Any]) -> dict[str, Any]:
    from revenue.chain.client import chain_items_paid
    from revenue.chain.devnode import AnvilNode

    batch, batched_events, single_events = config["batch"], config["batched_events"], config["single_events"]
    with AnvilNode() as node:
        sender = Sender(node.uri)
        sender.deliver(10)  # warm-up: every stream's slot written once

        began = time.perf_counter()
        single_gas = [sender.deliver(1) for _ in range(single_events)]
        single_s = time.perf_counter() - began

        began = time.perf_counter()
        batched_gas: list[int] = []
        remaining = batched_events
        while remaining > 0:
            size = min(batch, remaining)
            batched_gas.append(sender.deliver(size))
            remaining -= size
        batched_s = time.perf_counter() - began

        on_chain = chain_items_paid(sender.w3, sender.address)
        if on_chain != sender.delivered:
            raise RuntimeError(f"contract says {on_chain} items paid, sender delivered {sender.delivered}")

    gas_single = statistics.median(single_gas)
    gas_per_event_batched = sum(batched_gas) / batched_events
    single_rate = single_events / single_s
    batched_rate = batched_events / batched_s
    return {
        "primitive_events_per_s": batched_rate,
        "primitive_single_events_per_s": single_rate,
        "primitive_speedup": batched_rate / single_rate,
        "gas_single_tx": gas_single,
        "gas_per_event_batched": gas_per_event_batched,
        "gas_per_event_ratio": gas_per_event_batched / gas_single,
        "batch_size": batch,
        "batched_events": batched_events,
        "batched_transactions": len(batched_gas),
        "single_events": single_events,
        "batched_seconds": batched_s,
        "single_seconds": single_s,
        "primitive_rss_mb": vm_hwm_mb_self(),
    }


def vm_hwm_mb_self() -> float:
    import os

    return vm_hwm_mb(os.getpid())


def main(argv: list[str]) -> int:
    with open(argv[1]) as handle:
        config = json.load(handle)
    result = run(config)
    with open(argv[2], "w") as handle:
        json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
