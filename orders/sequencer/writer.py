"""The batch writer: everything one batch changed, in one transaction, with a fixed number
of multi-row statements whatever the number of commands, orders, trades or makers."""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q

from orders.engine.book import LiveOrder
from orders.engine.market import Journal
from orders.models import Market, Order, OrderEvent, Trade, TradeOutbox, TradeOutboxStatus
from orders.selectors.orders import FILL_FIELDS
from orders.sequencer.answers import BOOK, HOUSE, MAKER, TAKER, StoredFill, StoredHistory
from orders.sequencer.arrays import (
    Row,
    array_literal,
    ids_reserve,
    statements_pipelined,
    table_insert,
    table_update,
)
from orders.sequencer.reads import NEW_ID_MODELS
from orders.sequencer.wallets import BatchWallets

ORDER_UPDATE_FIELDS = (
    "filled_quantity",
    "quote_filled",
    "fee_paid",
    "locked_amount",
    "status",
    "status_reason",
    "updated_at",
    "triggered_at",
    "filled_at",
    "cancelled_at",
    "closed_at",
)


ORDER_INSERT_FIELDS = (
    "user",
    "market",
    "side",
    "type",
    "time_in_force",
    "stp",
    "price",
    "stop_price",
    "quantity",
    "client_order_id",
    "request_fingerprint",
    "created_at",
    *ORDER_UPDATE_FIELDS,
)
TRADE_FIELDS = (
    "market",
    "price",
    "quantity",
    "quote_amount",
    "taker_side",
    "taker_order",
    "maker_order",
    "taker_user",
    "maker_user",
    "taker_fee",
    "maker_fee",
    "is_house",
    "reference_price",
    "executed_at",
)
OUTBOX_PENDING = TradeOutboxStatus.PENDING.value
OUTBOX_FIELDS = ("trade", "status", "attempts", "last_error", "correlation_id", "created_at", "processed_at")


def _id(order: LiveOrder) -> int:
    if order.id is None:
        raise ValueError("orders are inserted before what refers to them")
    return order.id


def _order_update_row(order: LiveOrder) -> Row:
    """ORDER_UPDATE_FIELDS of an order."""
    return (
        order.filled_quantity,
        order.quote_filled,
        order.fee_paid,
        order.locked_amount,
        order.status,  # an enum member: the writer's arrays know its text (orders.sequencer.arrays)
        order.status_reason,
        order.updated_at,
        order.triggered_at,
        order.filled_at,
        order.cancelled_at,
        order.closed_at,
    )


def _order_insert_row(order: LiveOrder) -> Row:
    """ORDER_INSERT_FIELDS of a new order."""
    return (
        order.user_id,
        order.market_id,
        order.side,  # enum members, as in _order_update_row
        order.type,
        order.time_in_force,
        order.stp,
        order.price,
        order.stop_price,
        order.quantity,
        order.client_order_id,
        order.request_fingerprint,
        order.created_at,
        *_order_update_row(order),
    )


@dataclass(frozen=True, slots=True)
class Written:
    changes: list[tuple[LiveOrder, str, str | None]]  # the status changes: order, status, reason
    outbox_ids: list[int]
    # The stored fills and events of the orders named by batch_write's `histories`, this
    # batch's included (an order without any is absent).
    histories: dict[int, StoredHistory] = field(default_factory=dict)


def batch_write(
    *,
    journal: Journal,
    wallets: BatchWallets,
    now: datetime,
    histories: Collection[int] = (),
    drawn: list[list[int]] | None = None,
) -> Written:
    """Write the batch in one transaction (the caller's). On PostgreSQL in one or two round
    trips whatever the batch holds (there were eight): the wallets that only received
    postings are locked and the new rows' ids the batch did not draw ahead (`drawn`, with
    its reads: orders.sequencer.reads) reserved, together, when there are any; then every
    write sent at once (statements_pipelined). `histories`: orders whose stored fills and
    events are read back after the writes (a cancel's answer shows them), in the same
    pipeline."""
    if connection.vendor != "postgresql":
        written = _write(journal=journal, wallets=wallets, now=now, ids=None)
        written.histories.update(histories_read(sorted(set(histories)))())
        return written
    with statements_pipelined():
        locked = wallets.lock_pending_sent()
        reserved = _ids_reserved(journal, drawn=drawn)
        locked()  # makers' wallets not guessed at the start: in the same round trip as the ids' reservation
        written = _write(journal=journal, wallets=wallets, now=now, ids=reserved())
        written.histories.update(histories_read(sorted(set(histories)))())
        return written


def _ids_reserved(journal: Journal, *, drawn: list[list[int]] | None) -> Callable[[], list[list[int]]]:
    """The new ids of the batch's orders, trades and outbox rows: those drawn ahead first,
    the rest reserved now (sent at once: nothing is sent when the drawn ones suffice). Each
    list ascends: what is drawn later from a sequence is larger. Ids drawn and not used are
    left unused, as a rolled-back transaction leaves them."""
    wanted = [len(journal.new_orders), len(journal.trades), len(journal.trades)]
    have = drawn or [[], [], []]
    more = ids_reserve(
        [(model, max(count - len(ids), 0)) for model, count, ids in zip(NEW_ID_MODELS, wanted, have, strict=True)]
    )
    return lambda: [(ids + extra)[:count] for ids, extra, count in zip(have, more(), wanted, strict=True)]


def batch_write_sent(
    *,
    journal: Journal,
    wallets: BatchWallets,
    now: datetime,
    histories: Collection[int],
    within: ExitStack,
    drawn: list[list[int]] | None = None,
) -> tuple[Written, Callable[[], None]]:
    """PostgreSQL: as batch_write, sent without waiting for the server's answers but for
    the new rows' ids not drawn ahead (the sequencer applies the next batch meanwhile); the caller sends
    COMMIT after them (commit_sent). The pipeline is entered on `within` (which holds the
    batch's transaction) and stays open: the returned function reads the stored histories
    into the Written, waiting for the server; closing `within` then waits for COMMIT's
    answer (an error surfaces there). Nothing else may use the connection in between."""
    within.enter_context(statements_pipelined())
    locked = wallets.lock_pending_sent()
    reserved = _ids_reserved(journal, drawn=drawn)
    locked()
    written = _write(journal=journal, wallets=wallets, now=now, ids=reserved())
    read = histories_read(sorted(set(histories)))

    def finish() -> None:
        written.histories.update(read())

    return written, finish


def commit_sent() -> None:
    """COMMIT queued behind a batch_write_sent: the end of its BatchTransaction (or, in an
    atomic block, Django's commit then finds nothing to do).
    Sent last: whatever fails before it rolls the batch back with certainty. Never
    prepared (ENGINE_PREPARED_STATEMENTS prepares the batch's statements only)."""
    raw = connection.connection
    threshold, raw.prepare_threshold = raw.prepare_threshold, None
    try:
        with connection.cursor() as cursor:
            cursor.execute("COMMIT")
    finally:
        raw.prepare_threshold = threshold


def histories_read(order_ids: list[int]) -> Callable[[], dict[int, StoredHistory]]:
    """The stored fills and events of these orders (what their contract body shows). On
    PostgreSQL the two statements are sent at once and read when the returned function
    is called (in a pipeline: with whatever else is queued); elsewhere through the ORM."""
    if not order_ids:
        return dict
    wanted = set(order_ids)
    if connection.vendor != "postgresql":
        trade_rows: Any = (
            Trade.objects.filter(Q(taker_order_id__in=wanted) | Q(maker_order_id__in=wanted))
            .order_by("id")
            .values_list(*FILL_FIELDS)
        )
        event_rows: Any = (
            OrderEvent.objects.filter(order_id__in=wanted).order_by("id").values_list(*_HISTORY_EVENT_FIELDS)
        )
        return lambda: _histories(wanted, trades=list(trade_rows), events=list(event_rows))
    ids = array_literal(order_ids)
    trades = connection.cursor()
    trades.execute(_history_sql()[0], [ids, ids])
    events = connection.cursor()
    events.execute(_history_sql()[1], [ids])

    def read() -> dict[int, StoredHistory]:
        try:
            return _histories(wanted, trades=trades.fetchall(), events=events.fetchall())
        finally:
            trades.close()
            events.close()

    return read


_HISTORY_EVENT_FIELDS = ("order_id", "status", "reason", "at")
_HISTORY_SQL: list[str] = []


def _history_sql() -> list[str]:
    if not _HISTORY_SQL:
        quote = connection.ops.quote_name

        def columns(model: Any, names: tuple[str, ...]) -> str:
            return ", ".join(quote(model._meta.get_field(name.removesuffix("_id")).column) for name in names)

        trade, event = quote(Trade._meta.db_table), quote(OrderEvent._meta.db_table)
        taker, maker = quote("taker_order_id"), quote("maker_order_id")
        _HISTORY_SQL.extend(
            [
                f"SELECT {columns(Trade, FILL_FIELDS)} FROM {trade} "  # noqa: S608  (identifiers from the models)
                f"WHERE {taker} = ANY(%s::bigint[]) OR {maker} = ANY(%s::bigint[]) ORDER BY {quote('id')}",
                f"SELECT {columns(OrderEvent, _HISTORY_EVENT_FIELDS)} FROM {event} "  # noqa: S608
                f"WHERE {quote('order_id')} = ANY(%s::bigint[]) ORDER BY {quote('id')}",
            ]
        )
    return _HISTORY_SQL


def _histories(wanted: set[int], *, trades: Any, events: Any) -> dict[int, StoredHistory]:
    found: dict[int, StoredHistory] = {}
    for trade_id, price, quantity, taker_fee, maker_fee, is_house, taker, maker in trades:
        if taker in wanted:
            found.setdefault(taker, StoredHistory()).fills.append(
                StoredFill(trade_id, price, quantity, taker_fee, TAKER, HOUSE if is_house else BOOK)
            )
        if maker in wanted:
            found.setdefault(maker, StoredHistory()).fills.append(
                StoredFill(trade_id, price, quantity, maker_fee, MAKER, BOOK)
            )
    for order_id, status, reason, at in events:
        found.setdefault(order_id, StoredHistory()).events.append((status, reason, at))
    return found


def _write(*, journal: Journal, wallets: BatchWallets, now: datetime, ids: list[list[int]] | None) -> Written:
    order_ids, trade_ids, outbox_ids = ids or (None, None, None)
    new_ids = table_insert(
        Order, fields=ORDER_INSERT_FIELDS, rows=[_order_insert_row(o) for o in journal.new_orders], ids=order_ids
    )
    for order, new_id in zip(journal.new_orders, new_ids, strict=True):
        order.id = new_id
    created = {id(order) for order in journal.new_orders}
    existing = [order for key, order in journal.touched.items() if key not in created]
    table_update(
        Order, fields=ORDER_UPDATE_FIELDS, rows=[(_id(order), *_order_update_row(order)) for order in existing]
    )

    outbox: list[int] = []
    if journal.trades:
        inserted = table_insert(
            Trade,
            fields=TRADE_FIELDS,
            rows=[
                (
                    trade.taker.market_id,
                    trade.price,
                    trade.quantity,
                    trade.settled.notional,
                    trade.taker.side,
                    _id(trade.taker),
                    None if trade.maker is None else trade.maker.id,
                    trade.taker.user_id,
                    trade.maker_user_id,
                    trade.settled.taker_fee,
                    trade.settled.maker_fee,
                    trade.maker is None,
                    trade.reference_price,
                    trade.executed_at,
                )
                for trade in journal.trades
            ],
            ids=trade_ids,
        )
        for trade, trade_id in zip(journal.trades, inserted, strict=True):
            trade.id = trade_id
        outbox = table_insert(
            TradeOutbox,
            fields=OUTBOX_FIELDS,
            rows=[
                (trade_id, OUTBOX_PENDING, 0, "", trade.taker.correlation_id or "", now, None)
                for trade, trade_id in zip(journal.trades, inserted, strict=True)
            ],
            ids=outbox_ids,
        )
    changes: list[tuple[LiveOrder, str, str | None]] = []
    for order in [*journal.new_orders, *existing]:
        changes += [(order, status.value, reason) for status, reason in order.pending_events]
    table_insert(
        OrderEvent,
        fields=("order", "status", "reason", "at"),
        rows=[(_id(order), status, reason, now) for order, status, reason in changes],
        returning=False,
    )
    wallets.flush()
    if journal.markets:
        table_update(
            Market,
            fields=_MARKET_FIELDS,
            rows=[(spec.id, spec.last_price, spec.reference_price) for spec in journal.markets.values()],
        )
    return Written(changes=changes, outbox_ids=outbox)


_MARKET_FIELDS = ("last_price", "reference_price")
