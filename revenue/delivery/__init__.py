"""On-chain delivery of the holder share (docs/delivery.md).

service      the cycle: revenue_events_deliver, revenue_events_redrive, staff retry
reconcile    what the chain says about every batch in flight
broadcast    build, persist, broadcast, rebroadcast, replace, rebuild
transitions  every state change of batches, events and stream totals (SQL only)
selectors    what to deliver next, batches in flight, the ETH price
lock         one sender
heartbeat    the worker's last run, for the status endpoint
"""

from revenue.delivery.service import (
    DeliveryCycleResult,
    revenue_event_delivery_retry,
    revenue_events_deliver,
    revenue_events_redrive,
)

__all__ = [
    "DeliveryCycleResult",
    "revenue_event_delivery_retry",
    "revenue_events_deliver",
    "revenue_events_redrive",
]
