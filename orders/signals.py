"""Events orders announces to later apps (which connect to them; orders imports none)."""

from django.dispatch import Signal

# Sent after a batch that made trades has committed: outbox_ids (its TradeOutbox rows).
trades_committed = Signal()
