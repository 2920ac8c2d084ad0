"""Taking a batch back in memory. Pure Python.

A batch changes the books before its transaction commits. When the transaction fails in a
way worth retrying at once (a deadlock or a lock another engine holds, a client order id
taken meanwhile, SQLite busy), the sequencer puts memory back as it was before the batch
from this log, instead of reading the markets' books again from the database (seconds for
a book of 100,000s of orders; docs/matching.md, "Recovery").

Every change to memory a batch makes is recorded before it is made, with what takes it
back: a resting order added to or removed from a price level (and its place in the
level), a stop added or taken, an order dropped from or added to the live orders, a
market's last or reference price, and the columns of an order that existed before the
batch (kept once, before its first change). Orders the batch created are simply dropped
with it. Taken back in the reverse order, each step finds memory as it was right after
that change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from typing import Any

from orders.engine.book import LiveOrder

# Every column of an order but its pending events (a list: copied, not shared).
_COLUMNS = tuple(f.name for f in fields(LiveOrder) if f.name != "pending_events")
_columns_of = attrgetter(*_COLUMNS)  # all of them in one call (a maker is kept at each fill)


def _restore(order: LiveOrder, values: tuple[Any, ...], events: list[Any]) -> None:
    for name, value in zip(_COLUMNS, values, strict=True):
        setattr(order, name, value)
    order.pending_events = events


class Undo:
    """The log of one batch's changes to memory (cleared when the batch commits)."""

    __slots__ = ("_kept", "_kept_before_mark", "_mark", "_steps")

    def __init__(self) -> None:
        self._steps: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self._kept: set[int] = set()
        # A second batch applied while the first is being committed (the sequencer's
        # overlap): its steps follow the mark, and it keeps the columns of an order as the
        # first batch left them (kept again, after the mark).
        self._mark: int | None = None
        self._kept_before_mark: set[int] = set()

    def __len__(self) -> int:
        return len(self._steps)

    def record(self, step: Callable[..., object], *args: Any) -> None:
        """`step(*args)` takes back a change about to be made."""
        self._steps.append((step, args))

    def keep(self, order: LiveOrder) -> None:
        """Before an order that existed before the batch first changes: its columns kept."""
        if order.id is None or id(order) in self._kept:  # created by this batch: goes with it
            return
        self._kept.add(id(order))
        values = _columns_of(order)
        self._steps.append((_restore, (order, values, list(order.pending_events))))

    def clear(self) -> None:
        self._steps.clear()
        self._kept.clear()
        self._mark, self._kept_before_mark = None, set()

    def mark(self) -> None:
        """What follows belongs to the next batch (rollback_to_mark takes back only it)."""
        self._mark, self._kept_before_mark, self._kept = len(self._steps), self._kept, set()

    def rollback_to_mark(self) -> None:
        """Memory as it was at the mark: the next batch's changes taken back, the first's kept."""
        if self._mark is None:
            raise ValueError("no mark")
        for step, args in reversed(self._steps[self._mark :]):
            step(*args)
        del self._steps[self._mark :]
        self._kept, self._mark, self._kept_before_mark = self._kept_before_mark, None, set()

    def forget_before_mark(self) -> None:
        """The first batch committed: only the next batch's changes can still be taken back."""
        if self._mark is None:
            self.clear()
            return
        del self._steps[: self._mark]
        self._mark, self._kept_before_mark = None, set()

    def rollback(self) -> None:
        """Memory as it was when the log was last cleared (both batches, past a mark)."""
        for step, args in reversed(self._steps):
            step(*args)
        self.clear()
