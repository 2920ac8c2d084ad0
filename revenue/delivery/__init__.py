"""On-chain delivery of the holder share (docs/delivery.md).

metadata     the revenue event's metadata document: keys, statuses, patches (no web3)
service      the cycle: revenue_events_deliver, revenue_events_redrive, staff retry
health       what the node and the contract say before anything is sent; operator faults
pause        pausing and resuming delivery, with its alerts
scan         the reserve's logs: who paid what, in the canonical chain
reconcile    every batch not final brought up to date with the chain
broadcast    the transaction manager: build, persist, broadcast, re-sign, rebuild, fill gaps
dust         holder shares too small to pay alone, carried forward into bundles
pricing      the USD -> wei price, bounded by recent trades
transitions  every state change of batches, events and stream totals (SQL only)
selectors    what to deliver next, batches in flight
lock         one sender
heartbeat    the worker's last run, for the status endpoint

This package imports nothing on load: web processes import ``revenue.delivery.metadata``
without loading web3; the worker imports ``revenue.delivery.service``.
"""
