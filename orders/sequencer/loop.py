"""The sequencer: the single writer of the orders of its markets.

It owns their books in memory (loaded from the database when first needed), applies the
commands of a batch strictly one at a time in arrival order through the pure engine
(orders.engine.market), writes the whole batch in one transaction (orders.sequencer.writer)
and only then answers. Wallet rows are locked once per batch; no market row is locked.

If a batch fails after memory changed, nothing of it was committed, and memory must not
hold what the database does not: when the server refused it (a deadlock between two
engines, a lock another holds, a constraint, a client order id taken meanwhile) the batch's
changes are taken back in memory (orders.engine.undo) and the batch retried or refused;
after a lost connection (the commit's outcome unknown) or anything else (a bug) the markets
are reloaded from the database before the next batch."""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from accounts.authentication import CredentialsInvalid
from accounts.credentials import mark_among
from core.api.fields import moment_text
from core.errors import ApplicationError, InternalError, ServiceUnavailable
from core.logging import correlation_context, correlation_id_new
from core.metrics import (
    ENGINE_BATCH_COMMANDS,
    ENGINE_BATCH_SECONDS,
    ENGINE_COMMANDS_LATE,
    ENGINE_QUEUE_DEPTH,
    FEES,
    ORDERS_FINAL,
    TRADES,
)
from core.money import ZERO, parse_amount
from orders.engine.book import LiveOrder
from orders.engine.market import Journal, MarketEngine, TradeRecord
from orders.engine.money import is_multiple_of
from orders.engine.pricing import reference_price_move_allowed
from orders.engine.rates import usd_rates
from orders.engine.requests import ANY_GRID, OrderRequest, order_request_validate
from orders.engine.settlement import TRADER_BUCKET, WalletKey
from orders.engine.types import Counterparty, OrderStatus, OrderType, Side
from orders.engine.undo import Undo
from orders.errors import (
    DuplicateClientOrderId,
    InvalidPrice,
    MarketInactive,
    MarketNotFound,
    MarketNotFoundInRequest,
    OrderNotCancellable,
    OrderNotFound,
)
from orders.models import Market, Order, OrderEvent
from orders.selectors.tickers import trade_last_executed_at
from orders.sequencer import commands as c
from orders.sequencer.answers import StoredHistory, order_body, order_body_stored
from orders.sequencer.arrays import BatchTransaction
from orders.sequencer.known import Known, Unknown, same
from orders.sequencer.leadership import LeaderFence
from orders.sequencer.reads import BatchReads, BatchWanted, batch_reads
from orders.sequencer.recovery import market_engine_load, trading_rules
from orders.sequencer.wallets import BatchDiscounts, BatchWallets
from orders.sequencer.writer import Written, batch_write, batch_write_sent, commit_sent
from orders.signals import trades_committed
from orders.streams.publish import batch_committed as streams_batch
from orders.system_accounts import system_user_ids

logger = logging.getLogger("orders.sequencer")
lifecycle = logger.getChild("lifecycle")
MAX_ATTEMPTS = 4
CLOSED_REMEMBERED = 100_000
# New orders sort after every loaded one until their id is known (orders.engine.book.LiveOrder.seq).
_NEW_SEQ_START = 10**15

Deferred = Callable[[], c.Answer]


class _Late:
    """An answer that shows what the batch's write read back (a cancel's stored fills and
    events): built once the write's answers arrived. Every other answer is built as soon
    as the batch is written, before a next batch may change the orders it shows."""

    __slots__ = ("build",)

    def __init__(self, build: Deferred) -> None:
        self.build = build

    def __call__(self) -> c.Answer:
        return self.build()


@dataclass
class _Ahead:
    """A batch applied in memory while the one before it commits (run_overlapped)."""

    commands: list[c.Command]
    batch: _Batch
    assumed: BatchReads
    values: dict[WalletKey, tuple[int, Decimal, Decimal]]  # of its wallets, as assumed
    deferred: list[Deferred]


@dataclass
class _InFlight:
    """A batch written and COMMIT sent, its answers not yet given (run_overlapped)."""

    commands: list[c.Command]
    batch: _Batch
    answers: list[c.Answer | None]  # None: a _Late answer, built when it lands
    deferred: list[Deferred]
    within: ExitStack  # its transaction and the write's pipeline
    finish_write: Callable[[], None]
    began: float
    closed: dict[int, int]  # the orders it closed: owner by id
    # What to ask the database when the connection is lost while it commits (_commit_outcome).
    backend_pid: int
    first_order_id: int | None  # the first order it inserts (None: it inserts none)
    after_commit: list[Callable[[], object]]  # its transaction's on_commit work, in order


def _no_database(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    raise Unknown("the database, while the batch before commits")


# PostgreSQL's lock_not_available: a wallet first met after the batch's first locks was
# held by another transaction (orders.sequencer.wallets.BatchWallets, `nowait`).
_LOCK_BUSY = "55P03"


# PostgreSQL's invalid_sql_statement_name: the server no longer knows a statement psycopg
# prepared on this connection (seen after a failover, right after a late wallet lock was
# refused). Nothing of the batch committed; on this connection every attempt, and each
# command run alone, would fail the same way: it runs again on a new one.
_STATEMENTS_LOST = "26000"


# A wall clock found behind the engine's clock by more than this is logged (a step back).
CLOCK_STEP_LOGGED_SECONDS = 1.0
_MICROSECOND = timedelta(microseconds=1)


class EngineClock:
    """The moment of a batch (its orders' created_at, their events' `at`, its trades'
    executed_at): the host's wall clock, never earlier than a moment already given, nor than
    the last trade of a market the sequencer installed. A wall clock stepping back (an NTP
    correction, a VM resumed from a pause, a host set right after running minutes ahead)
    made a later trade (a higher id) older than an earlier one: the REST candles put it in
    an earlier, closed minute, the streams' kept candles left it out (their close no longer
    the last price), an order's events went back in time. While the wall clock is behind,
    each batch's moment is a microsecond after the one before (a later batch is never at an
    earlier or the same moment: an order closed by an earlier batch never looks closed at
    the moment a later order arrived) until the wall clock passes it again. `wall`: the
    wall clock read (django.utils.timezone.now when None)."""

    def __init__(self, wall: Callable[[], datetime] | None = None) -> None:
        self._wall = wall
        self.last: datetime | None = None
        self._behind = False  # the wall clock was found behind (logged once per step)

    def now(self) -> datetime:
        wall = timezone.now() if self._wall is None else self._wall()
        last = self.last
        if last is not None and wall <= last:
            if not self._behind and (last - wall).total_seconds() > CLOCK_STEP_LOGGED_SECONDS:
                self._behind = True
                logger.warning(
                    "the wall clock is %.3f s behind the engine's last moment (stepped back?): "
                    "batches go on from that moment, a microsecond each, until it passes it",
                    (last - wall).total_seconds(),
                )
            wall = last + _MICROSECOND
        else:
            self._behind = False
        self.last = wall
        return wall

    def not_before(self, at: datetime | None) -> None:
        """No moment given from now on is earlier than `at`."""
        if at is not None and (self.last is None or at > self.last):
            self.last = at


def _sqlstate(exc: DatabaseError) -> str | None:
    return getattr(getattr(exc, "__cause__", None), "sqlstate", None)


def _statements_lost(exc: DatabaseError) -> bool:
    if _sqlstate(exc) != _STATEMENTS_LOST:
        return False
    connection.close()  # the next statement opens a new connection: its statements prepared afresh
    return True


# SQLite's SQLITE_BUSY ("database is locked") and SQLITE_LOCKED ("database table is locked").
_SQLITE_LOCKED = re.compile(r"database (table )?is locked")


def _retryable(exc: DatabaseError) -> bool:
    """A deadlock or serialization failure between two engines, a wallet another holds,
    SQLite's busy database or table (a table another connection of the process reads on a
    shared-cache database: the announcer thread seeding a market's candles while the batch
    writes its trades), or a unique client_order_id taken by another engine meanwhile: the
    batch runs again."""
    if isinstance(exc, IntegrityError):
        return "client_order_id" in str(exc)
    return _sqlstate(exc) in {"40P01", "40001", _LOCK_BUSY} or _SQLITE_LOCKED.search(str(exc)) is not None


class Sequencer:
    def __init__(
        self,
        *,
        symbols: Collection[str] | None = None,
        excluded: Collection[str] = (),
        announce: Callable[[Callable[[], None]], object] | None = None,
        clock: EngineClock | None = None,
    ) -> None:
        # How what follows a commit (metrics, logs, the trades_committed signal, whose
        # receivers publish tasks) is run: at once by default; an engine process hands it
        # to a thread of its own, so that a slow or absent broker never delays a batch.
        self.announce = announce or (lambda work: work())
        # Every batch's moment (EngineClock): never back in time, whatever the host's clock does.
        self.clock = clock or EngineClock()
        self._symbols = set(symbols) if symbols else None  # None: every market ...
        self._excluded = set(excluded)  # ... but these (other shards')
        self._markets: dict[int, MarketEngine] = {}
        self._ids: dict[str, int] = {}
        self._stale: set[int] = set()
        self._seq = itertools.count(_NEW_SEQ_START)
        # Orders this sequencer closed (id -> owner), the newest CLOSED_REMEMBERED: a cancel
        # of one (it filled before the cancel arrived) answers 409 without a read.
        self._closed: dict[int, int] = {}
        # What the batch in progress changed in memory, to take it back if it fails.
        self.undo = Undo()
        # The wallets a refused attempt of the batch in progress met: the next attempt locks
        # them all at its start, in id order (BatchWallets, `nowait`).
        self._lock_first: set[WalletKey] = set()
        self.batches = 0
        self.taken_back = 0  # batches taken back in memory (not reloaded) after a database error
        # run_overlapped: the batch whose COMMIT is on its way, and what the next one assumes.
        self._in_flight: _InFlight | None = None
        self._known = Known()
        self.ahead_applied = 0  # batches applied ahead of the commit before them ...
        self.ahead_again = 0  # ... and of those, applied again on what their reads found
        # An engine process leading on PostgreSQL: every batch transaction begins with this
        # check, which fails it once another engine may lead (orders.sequencer.leadership).
        self.fence: LeaderFence | None = None

    # --- markets ----------------------------------------------------------------------

    def owns(self, symbol: str) -> bool:
        return (self._symbols is None or symbol in self._symbols) and symbol not in self._excluded

    def load(self) -> int:
        """Load every market this sequencer owns (engine start); returns the live orders."""
        system_user_ids()
        markets = Market.objects.select_related("quote")
        if self._symbols is not None:
            markets = markets.filter(symbol__in=self._symbols)
        for market in markets:
            if self.owns(market.symbol):
                self._install(market)
        return self.live_orders

    @property
    def live_orders(self) -> int:
        """The live orders of the markets loaded (resting and pending stops), as held now."""
        return sum(len(engine.live) for engine in self._markets.values())

    @property
    def markets(self) -> list[MarketEngine]:
        return list(self._markets.values())

    def markets_owned(self) -> list[MarketEngine]:
        """Every market this sequencer owns, those not loaded yet loaded now (a cancel-all
        across markets must see orders of a market no command has named since start)."""
        for market in Market.objects.select_related("quote").exclude(pk__in=list(self._markets)):
            if self.owns(market.symbol):
                self._install(market)
        return self.markets

    def _install(self, market: Market) -> MarketEngine:
        engine = market_engine_load(market=market, rules=trading_rules())
        engine.attach(self.undo)
        self.clock.not_before(trade_last_executed_at(market_id=market.pk))
        self._markets[market.pk] = engine
        self._ids[market.symbol] = market.pk
        self._stale.discard(market.pk)
        return engine

    def clock_seed(self) -> None:
        """Taking over (a standby that loaded its markets a while ago): no batch's moment
        earlier than the last trade of a market it owns, whatever the engine before wrote
        since (its host's clock may have run ahead of this one's)."""
        for market_id in list(self._markets):
            self.clock.not_before(trade_last_executed_at(market_id=market_id))

    def _market(self, *, symbol: str | None = None, market_id: int | None = None) -> MarketEngine | None:
        if symbol is not None:
            market_id = self._ids.get(symbol)
            if market_id is None:
                if not self.owns(symbol):
                    return None
                row = Market.objects.select_related("quote").filter(symbol=symbol).first()
                return None if row is None else self._install(row)
        if market_id is None:
            return None
        engine = self._markets.get(market_id)
        if engine is None:
            row = Market.objects.select_related("quote").filter(pk=market_id).first()
            if row is None or not self.owns(row.symbol):
                return None
            engine = self._install(row)
        return engine

    def _reinstall_stale(self) -> None:
        """Markets reloaded when memory may have diverged (a batch failed after changing it)."""
        for market_id in list(self._stale):
            row = Market.objects.select_related("quote").filter(pk=market_id).first()
            if row is None:
                self._markets.pop(market_id, None)
                self._stale.discard(market_id)
            else:
                self._install(row)

    def _specs_update(self, rows: list[tuple[Any, ...]]) -> None:
        """The market rows as this batch read them (orders.sequencer.reads.MARKET_FIELDS): a
        market deactivated or re-gridded by staff applies from this batch."""
        for market_id, active, tick, step, minimum, reference in rows:
            engine = self._markets.get(market_id)
            if engine is None:
                continue
            spec = engine.spec
            spec.is_active, spec.price_tick, spec.quantity_step = active, tick, step
            spec.min_quantity, spec.reference_price = minimum, reference

    def _closed_remember(self, closed: list[tuple[int, int]]) -> None:
        self._closed.update(closed)
        if len(self._closed) > CLOSED_REMEMBERED:  # forget the oldest half (dicts keep insertion order)
            for order_id in list(itertools.islice(self._closed, len(self._closed) // 2)):
                del self._closed[order_id]

    def market_holding(self, order_id: int, *, market_id: int | None = None) -> MarketEngine | None:
        """The loaded market whose live orders hold `order_id` (`market_id`: only that one)."""
        if market_id is not None:
            engine = self._market(market_id=market_id)
            return engine if engine is not None and order_id in engine.live else None
        for engine in self._markets.values():
            if order_id in engine.live:
                return engine
        return None

    def closed_owner(self, order_id: int) -> int | None:
        """The owner of an order this sequencer closed lately, or None (not known here); the
        batch on its way included (a batch applied ahead is taken back if that one fails)."""
        owner = self._closed.get(order_id)
        if owner is None and self._in_flight is not None:
            owner = self._in_flight.closed.get(order_id)
        return owner

    # --- batches ----------------------------------------------------------------------

    def run_batch(self, commands: list[c.Command]) -> list[c.Answer]:
        """Apply and persist `commands`; one answer each, in order, once committed."""
        _batch_begins(commands)
        with ENGINE_BATCH_SECONDS.time():
            return self._run_batch(commands)

    def _run_batch(self, commands: list[c.Command]) -> list[c.Answer]:
        self._lock_first = set()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.undo.clear()  # what happened between batches (a standby's catch-up) stays
            try:
                # The last attempt waits for its later locks (a deadlock is then detected by
                # the server): a batch is not refused for a lock that is merely held.
                return self._batch(commands, nowait=attempt < MAX_ATTEMPTS)
            except DatabaseError as exc:
                lost = _statements_lost(exc)
                if isinstance(exc, IntegrityError) or _retryable(exc) or lost:
                    # The server refused the batch (nothing of it committed): memory as it
                    # was before it (every change it made was recorded first), without
                    # reading the books again.
                    self.undo.rollback()
                    self.taken_back += 1
                else:  # the connection lost, perhaps during COMMIT: what holds is read again
                    self.undo.clear()
                    self._stale |= set(self._markets)
                retried = isinstance(exc, IntegrityError | OperationalError) and _retryable(exc)
                if (retried or lost) and attempt < MAX_ATTEMPTS:
                    logger.warning("batch retried", extra={"attempt": attempt, "error": str(exc)[:200]})
                    if _sqlstate(exc) != _LOCK_BUSY:  # the retry waits for that lock in its first statement
                        time.sleep(0.01 * 2**attempt)
                    continue
                if isinstance(exc, OperationalError | InterfaceError):
                    logger.warning("database unavailable, batch of %s refused: %s", len(commands), exc)
                    return [c.error_answer(ServiceUnavailable(retry_after=1))] * len(commands)
                logger.exception("batch refused by the database")
                return self._isolate(commands)
            except _Overdue:
                self.undo.rollback()  # nothing of it committed: memory as before it
                self.taken_back += 1
                return self._without_overdue(commands)
            except Exception:
                logger.exception("batch failed")
                self.undo.clear()
                self._stale |= set(self._markets)  # a bug may have changed memory unrecorded
                return self._isolate(commands)
        raise AssertionError("unreachable")

    def _without_overdue(self, commands: list[c.Command]) -> list[c.Answer]:
        """A batch rolled back because a command's sender stopped waiting: the commands
        whose `apply_by` has passed (that one among them) answered 503 unapplied, the others
        run again."""
        now = time.time()
        overdue = [c.deadline_past(command, c.APPLY_BY, now) > 0 for command in commands]
        ENGINE_COMMANDS_LATE.labels(outcome="expired").inc(sum(overdue))
        logger.warning(
            "batch rolled back: %s of its %s commands outlived their senders' wait before it committed;"
            " answered 503, not applied",
            sum(overdue),
            len(commands),
        )
        rest = [command for command, late in zip(commands, overdue, strict=True) if not late]
        answered = iter(self._run_batch(rest) if rest else [])
        return [c.expired_answer() if late else next(answered) for late in overdue]

    # --- batches overlapped (PostgreSQL) ------------------------------------------------

    def run(self, commands: list[c.Command]) -> list[tuple[list[c.Command], list[c.Answer]]]:
        """A batch of at least ENGINE_OVERLAP_MIN_COMMANDS overlapped with the next one
        (run_overlapped), a smaller one run at once (run_batch, after the one on its way
        landed); returns the batches answered meanwhile. A batch that small would wait for
        the next one's apply for little: under the bench's API load (a few commands per
        batch) overlapping every batch cost a fifth of the throughput (docs/performance.md)."""
        threshold = settings.ENGINE_OVERLAP_MIN_COMMANDS
        if threshold > 0 and len(commands) >= threshold:
            return self.run_overlapped(commands)
        done = self.flush()
        if connection.vendor == "postgresql":
            done.append((commands, self._run_landed(commands)))
            return done
        return [*done, (commands, self.run_batch(commands))]

    def _run_landed(self, commands: list[c.Command]) -> list[c.Answer]:
        """PostgreSQL: as run_batch, with the batch's COMMIT queued behind its writes in
        the same pipeline (_launch) and landed at once (_land): one round trip fewer than
        writing, then committing. A failure goes the way of run_batch."""
        _batch_begins(commands)
        self._lock_first = set()
        flight = self._launch(commands, None)
        answers = None
        if flight is not None:
            answers, _ = self._land(flight)
        return self._run_batch(commands) if answers is None else answers

    def run_overlapped(self, commands: list[c.Command]) -> list[tuple[list[c.Command], list[c.Answer]]]:
        """Start `commands` as the next batch; returns the batches answered meanwhile, in
        order, with their answers (each answered once committed, as run_batch does).

        On PostgreSQL a batch's writes and COMMIT are sent without waiting for the server:
        the next batch is applied in memory meanwhile, on the values the sequencer knows
        (orders.sequencer.known), then the batch before it lands (its COMMIT's answer read,
        its answers given), and only then does the next one read and lock its rows, in its
        own transaction, as every batch does. Where they differ from what it assumed, it is
        taken back (undo log) and applied again on what was read. If the batch before
        fails, both are taken back and run again one after the other (run_batch). `flush`
        lands the last one. Elsewhere (SQLite): run_batch."""
        if connection.vendor != "postgresql":
            return [(commands, self.run_batch(commands))]
        _batch_begins(commands)
        done: list[tuple[list[c.Command], list[c.Answer]]] = []
        ahead = self._apply_ahead(commands) if self._in_flight is not None else None
        flight, self._in_flight = self._in_flight, None
        if flight is not None:
            answers, landed = self._land(flight)
            if not landed:
                ahead = None  # taken back with it, or forgotten with a reload
            done.append((flight.commands, self._run_batch(flight.commands) if answers is None else answers))
        self._in_flight = self._launch(commands, ahead)
        if self._in_flight is None:
            done.append((commands, self._run_batch(commands)))
        return done

    @property
    def in_flight(self) -> bool:
        """A batch is on its way (run_overlapped): nothing else may use the connection."""
        return self._in_flight is not None

    def flush(self) -> list[tuple[list[c.Command], list[c.Answer]]]:
        """Land the batch still on its way (run_overlapped), if any."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return []
        answers, _ = self._land(flight)
        return [(flight.commands, self._run_batch(flight.commands) if answers is None else answers)]

    def _apply_ahead(self, commands: list[c.Command]) -> _Ahead | None:
        """The next batch applied in memory on what the sequencer knows, without touching
        the connection (busy with the batch before). None, and memory as it was, when it
        needs anything else (it then runs as any batch, after the one before lands)."""
        if self._stale:
            return None
        self.undo.mark()
        batch = _Batch(sequencer=self, now=self.clock.now(), nowait=True)
        try:
            with connection.execute_wrapper(_no_database):
                wanted = batch.plan(commands)
                markets = [_market_row(engine) for engine in batch.engines.values()]
                assumed = self._known.assumed(wanted, markets=markets)
                values = {key: (int(row.pk), row.balance, row.locked) for key, row in assumed.wallets.items()}
                batch.adopt(assumed)
                deferred = [batch.apply(command) for command in commands]
        except Exception as exc:  # Unknown, or whatever the batch meets again when it runs as any batch
            self.undo.rollback_to_mark()
            if not isinstance(exc, Unknown):  # a bug may have changed memory unrecorded
                self._stale |= set(self._markets)
            logger.debug("batch not applied ahead: %r", exc)
            return None
        self.ahead_applied += 1
        return _Ahead(commands=commands, batch=batch, assumed=assumed, values=values, deferred=deferred)

    def _land(self, flight: _InFlight) -> tuple[list[c.Answer] | None, bool]:
        """The batch on its way committed: its answers, True. When it failed, False (the
        batch applied ahead is gone: taken back, or forgotten with a reload) and None if
        the server refused it (nothing of it committed; memory as before it: the caller
        runs it again), else 503s (the connection lost: the commit's outcome unknown)."""
        try:
            try:
                flight.finish_write()
            except BaseException as exc:
                flight.within.__exit__(type(exc), exc, exc.__traceback__)
                raise
            flight.within.close()  # COMMIT's answer; the commit hooks run
        except DatabaseError as exc:
            self._known.clear()
            if isinstance(exc, IntegrityError) or _retryable(exc) or _statements_lost(exc):
                self.undo.rollback()  # both batches: memory as before this one
                self.taken_back += 1
                logger.warning("batch retried", extra={"attempt": 1, "error": str(exc)[:200]})
                return None, False
            self.undo.clear()  # what holds is read again
            self._stale |= set(self._markets)
            if isinstance(exc, OperationalError | InterfaceError):  # the connection lost, perhaps during COMMIT
                committed = _commit_outcome(backend_pid=flight.backend_pid, first_order_id=flight.first_order_id)
                if committed is False:
                    logger.warning("connection lost before a batch of %s committed: run again", len(flight.commands))
                    return None, False
                if committed:
                    logger.warning("connection lost as a batch of %s committed: answered", len(flight.commands))
                    return self._landed_unseen(flight), False
                logger.warning("database unavailable, batch of %s refused: %s", len(flight.commands), exc)
                return [c.error_answer(ServiceUnavailable(retry_after=1))] * len(flight.commands), False
            return None, False  # refused by the server (nothing committed): run again, as run_batch would
        except Exception:  # a bug: whether it committed is not known here; the database says
            logger.exception("landing a batch failed")
            self._known.clear()
            self.undo.clear()
            self._stale |= set(self._markets)
            return [_FAILED] * len(flight.commands), False
        self.undo.forget_before_mark()
        self.batches += 1
        ENGINE_BATCH_SECONDS.observe(time.monotonic() - flight.began)
        answers = [
            deferred() if answer is None else answer
            for answer, deferred in zip(flight.answers, flight.deferred, strict=True)
        ]
        return answers, True

    def _landed_unseen(self, flight: _InFlight) -> list[c.Answer]:
        """The answers of a batch that committed though its COMMIT's answer was lost with the
        connection (a 503 then made a client without a client order id place again), and
        its transaction's after-commit work (the streams, the post-trade hand-over), which
        the lost connection skipped. An answer still to be read from the database (a
        cancel's history) is a 503: that read went with the connection."""
        self.batches += 1
        for work in flight.after_commit:
            try:
                work()
            except Exception:
                logger.exception("after-commit work of a batch failed")
        answers: list[c.Answer] = []
        for answer, deferred in zip(flight.answers, flight.deferred, strict=True):
            if answer is None:
                try:
                    answer = deferred()
                except Exception:
                    answer = c.error_answer(ServiceUnavailable(retry_after=1))
            answers.append(answer)
        return answers

    def _launch(self, commands: list[c.Command], ahead: _Ahead | None) -> _InFlight | None:
        """The batch read (the one applied ahead: checked against what it assumed), applied
        if it was not, written and its COMMIT sent. None when that failed (memory as before
        it, the transaction rolled back): the caller runs it as any batch."""
        began = time.monotonic()
        within = ExitStack()
        if ahead is None:
            self.undo.clear()
        try:
            # Its BEGIN goes with its reads (BatchTransaction): one round trip fewer than atomic().
            fence = self.fence
            committed = within.enter_context(
                BatchTransaction(leader_check=None if fence is None else (fence.SQL, fence.params))
            )
            backend_pid = int(connection.connection.info.backend_pid)
            if ahead is None:
                batch = _Batch(sequencer=self, now=self.clock.now(), nowait=True)
                batch.prepare(commands)
                read = batch.reads
                self._known.learn_reads(batch.wanted, read)
                deferred = [batch.apply(command) for command in commands]
            else:
                batch = ahead.batch
                read = batch_reads(wanted=batch.wanted)
                self._known.learn_reads(batch.wanted, read)
                deferred = ahead.deferred
                if not same(batch.wanted, assumed=ahead.assumed, values=ahead.values, read=read):
                    self.undo.rollback()  # only this batch's changes are left in the log
                    self.ahead_again += 1
                    batch = _Batch(sequencer=self, now=self.clock.now(), nowait=True)
                    batch.prepare(commands, reads=read)
                    deferred = [batch.apply(command) for command in commands]
            written, finish_write = batch_write_sent(
                journal=batch.journal,
                wallets=batch.wallets,
                now=batch.now,
                histories=batch.cancelled,
                within=within,
                drawn=read.ids,  # with the batch's own reads (those assumed ahead drew none)
            )
            batch.written = written
            answers = [None if isinstance(answer, _Late) else answer() for answer in deferred]
            batch.settle()
            closed = dict(batch.closed())
            after_commit: list[Callable[[], object]] = [
                lambda: self._closed_remember(list(closed.items())),
                lambda: self.announce(lambda: batch.committed(written)),
                lambda: self.announce(streams_batch(journal=batch.journal, markets=self._markets)),
            ]
            for work in after_commit:
                committed.on_commit(work)
            self._known.learn_written(batch.wallets.rows())
            _overdue_checked(commands)
            commit_sent()  # last: a failure before it rolls the batch back for certain
        except Exception as exc:
            lost = False
            try:
                within.__exit__(type(exc), exc, exc.__traceback__)
            except DatabaseError:  # the rollback not sent, no connection to be had: the database down
                lost = True
            self._known.clear()
            refused = isinstance(exc, DatabaseError) and (isinstance(exc, IntegrityError) or _retryable(exc))
            if not lost and (refused or isinstance(exc, _Overdue)):
                self.undo.rollback()
            else:  # run again as any batch, from the database
                self.undo.clear()
                self._stale |= set(self._markets)
            return None
        return _InFlight(
            commands=commands,
            batch=batch,
            answers=answers,
            deferred=deferred,
            within=within,
            finish_write=finish_write,
            began=began,
            closed=closed,
            backend_pid=backend_pid,
            first_order_id=batch.journal.new_orders[0].id if batch.journal.new_orders else None,
            after_commit=after_commit,
        )

    def _isolate(self, commands: list[c.Command]) -> list[c.Answer]:
        """After an unexpected failure: each command alone, so one bad command cannot sink
        the others; the one that fails alone is recorded as failed (never half-applied)."""
        if len(commands) > 1:
            return [self._run_batch([command])[0] for command in commands]
        return [_processing_failed(commands[0], fence=self.fence, clock=self.clock)]

    def _batch(self, commands: list[c.Command], *, nowait: bool = False) -> list[c.Answer]:
        now = self.clock.now()
        batch = _Batch(sequencer=self, now=now, nowait=nowait)
        try:
            with transaction.atomic(durable=True):
                _leader_checked(self.fence)
                batch.prepare(commands)
                deferred = [batch.apply(command) for command in commands]
                written = batch.written = batch_write(
                    journal=batch.journal,
                    wallets=batch.wallets,
                    now=now,
                    histories=batch.cancelled,
                    drawn=batch.reads.ids,
                )
                answers = [answer() for answer in deferred]
                batch.settle()
                _overdue_checked(commands)
                # Robust: once committed, a failure here is logged and must not reach
                # _run_batch, which would run the committed commands again.
                transaction.on_commit(lambda: self._closed_remember(batch.closed()), robust=True)
                transaction.on_commit(lambda: self.announce(lambda: batch.committed(written)), robust=True)
                transaction.on_commit(
                    lambda: self.announce(streams_batch(journal=batch.journal, markets=self._markets)), robust=True
                )
        except DatabaseError:
            self._lock_first |= batch.wallets.met()  # refused: a retry locks them at its start
            raise
        self.undo.clear()  # committed
        self.batches += 1
        self._known.learn_reads(batch.wanted, batch.reads)  # as written: the rows read are the ones changed
        self._known.learn_written(batch.wallets.rows())
        return answers


# How far into a book (per market and side) the makers whose wallets a batch locks at its
# start are guessed.
MAKERS_GUESSED = 64
# New ids a batch draws with its reads: one order per placement, this many trades (a batch
# with more trades reserves the rest when it writes, a round trip it otherwise saves).
TRADES_DRAWN_PER_PLACE = 2


@dataclass(slots=True)
class _Walk:
    makers: Iterator[LiveOrder]
    current: LiveOrder | None = None
    left: Decimal = ZERO  # of the current maker, once the batch's earlier orders took theirs
    met: int = 0


class _MakersAhead:
    """The wallets of the makers a batch's orders will likely meet (base and quote): locked
    with the takers' in the batch's first statement, in id order, they need no lock after
    matching, the one that can meet another engine's (BatchWallets, `nowait`). Each limit or
    market order walks the book as it stands, from where the batch's earlier orders of its
    side stopped, while the maker's price crosses its limit, for its quantity. A guess: STP,
    funds, stops and the batch's own resting orders are not simulated; a wallet it missed is
    locked after matching, as without it. A limit that crosses nothing guesses nothing."""

    def __init__(self) -> None:
        self.keys: set[WalletKey] = set()
        self._walks: dict[tuple[int, Side], _Walk] = {}

    def add(self, engine: MarketEngine, command: c.Command) -> None:
        try:
            side, kind = Side(str(command.get("side"))), str(command.get("type"))
            quantity = Decimal(str(command.get("quantity")))
            limit = Decimal(str(command.get("price"))) if kind == OrderType.LIMIT else None
        except (ValueError, ArithmeticError):  # refused later, by its validation
            return
        if kind not in (OrderType.LIMIT, OrderType.MARKET) or not quantity.is_finite():
            return
        if limit is not None and not limit.is_finite():
            return
        key = (engine.spec.id, side)
        walk = self._walks.get(key)
        if walk is None:
            walk = self._walks[key] = _Walk(makers=engine.book.makers(taker_side=side))
        spec = engine.spec
        while quantity > 0:
            if walk.current is None:
                if walk.met >= MAKERS_GUESSED:
                    return
                walk.current = next(walk.makers, None)
                if walk.current is None:
                    return
                walk.left, walk.met = walk.current.remaining, walk.met + 1
            maker = walk.current
            price = cast(Decimal, maker.price)
            if limit is not None and (price > limit if side is Side.BUY else price < limit):
                return  # kept: a later order with a better limit may reach it
            self.keys |= {(maker.user_id, spec.base_id, TRADER_BUCKET), (maker.user_id, spec.quote_id, TRADER_BUCKET)}
            taken = min(quantity, walk.left)
            quantity, walk.left = quantity - taken, walk.left - taken
            if walk.left <= 0:
                walk.current = None


class _Batch:
    """One batch's transaction state: wallets, discounts, client ids, the journal."""

    def __init__(self, *, sequencer: Sequencer, now: Any, nowait: bool = False) -> None:
        self.sequencer = sequencer
        self.now = now
        self.journal = Journal()
        self.wallets = BatchWallets(nowait=nowait)
        self.discounts = BatchDiscounts()  # the TTX asset as read by prepare
        self.client_ids: dict[tuple[int, str], tuple[int | LiveOrder, str]] = {}
        self.engines: dict[int, MarketEngine] = {}
        self.refused_users: set[int] = set()
        self._trades_of: dict[int, list[TradeRecord]] | None = None  # by id() of an order
        # Cancels of orders not in memory: id -> (owner, market symbol) as stored, read once.
        self.cancel_rows: dict[int, tuple[int, str]] = {}
        self.cancelled: list[int] = []
        self.written: Written | None = None
        self._now_text: str | None = None
        self.wanted = BatchWanted()  # what plan named
        self.reads = BatchReads()  # what adopt took

    def _user_refused(self, command: c.Command) -> bool:
        """A command authenticated by its credentials alone whose user is unknown or
        inactive, or whose token was issued under a password since changed."""
        if not command.get("check_user"):
            return False
        user = int(command["user_id"])
        if user in self.refused_users:
            return True
        mark = command.get(c.CREDENTIALS_MARK)
        return mark is not None and not mark_among(str(mark), self.reads.active_users[user])

    def prepare(self, commands: list[c.Command], *, reads: BatchReads | None = None) -> None:
        """Everything the commands name, read or locked in one round trip on PostgreSQL
        (orders.sequencer.reads): the users authenticated from their credentials alone
        (those that do not exist or are inactive are refused), the market rows, the TTX
        asset, the wallets, the fee discounts, the client order ids. A refused user's
        rows are read too (whether a user is refused is learnt in the same round trip);
        only their commands are refused, and no wallet is created for them. `reads`: read
        already (for what plan names), not read again."""
        self.sequencer._reinstall_stale()
        wanted = self.plan(commands)
        self.adopt(batch_reads(wanted=wanted) if reads is None else reads)

    def plan(self, commands: list[c.Command]) -> BatchWanted:
        """What the commands name (the first part of prepare): the rows to read and lock."""
        keys: set[tuple[int, int, int]] = set()
        users: set[int] = set()
        wanted: list[tuple[int, str]] = []
        unknown: set[int] = set()
        unchecked = {int(command["user_id"]) for command in commands if command.get("check_user")}
        ahead = _MakersAhead()
        rate_markets: set[str] = set()
        for command in commands:
            if command["op"] == c.PLACE:
                engine = self.sequencer._market(symbol=str(command.get("market")))
                if engine is None:
                    continue
                user = int(command["user_id"])
                users.add(user)
                keys |= {(user, engine.spec.base_id, 0), (user, engine.spec.quote_id, 0)}
                if command.get("client_order_id"):
                    wanted.append((user, str(command["client_order_id"])))
                ahead.add(engine, command)
                if engine.quote_rate_market is not None and engine.rules.house.enabled:
                    rate_markets.add(engine.quote_rate_market)  # the house's cap in dollars
            elif command["op"] == c.CANCEL:
                order_id = int(command["order_id"])
                engine = self.sequencer.market_holding(order_id, market_id=_market_id(command))
                if engine is None:
                    if self.sequencer.closed_owner(order_id) is None:
                        unknown.add(order_id)
                    continue
                held = engine.live[order_id]  # a cancel releases into the funding wallet
                keys.add(engine.accounts.funding(owner_id=held.user_id, side=held.side))
            elif command.get("market_id") is not None:  # cancel-all in a market, reference price
                engine = self.sequencer._market(market_id=int(command["market_id"]))
            else:
                continue
            if engine is not None:
                self.engines[engine.spec.id] = engine
        if unknown:
            keys |= self._cancels_find(unknown)
        keys |= ahead.keys
        keys |= self.sequencer._lock_first  # met by a refused attempt of this batch
        for engine in self.engines.values():
            accounts = engine.accounts
            keys.add(accounts.fee_wallet)
            if engine.rules.house.enabled:
                keys |= {accounts.house_base, accounts.house_quote}
        places = sum(1 for command in commands if command["op"] == c.PLACE)
        self.wanted = BatchWanted(
            users=unchecked,
            market_ids=list(self.engines),
            wallet_keys=keys,
            holders=users,
            client_ids=wanted,
            rate_markets=rate_markets,
            new_ids=(places, TRADES_DRAWN_PER_PLACE * places),
        )
        return self.wanted

    def adopt(self, reads: BatchReads) -> None:
        """What was read for plan's rows (the second part of prepare): users refused,
        market rows, the dollar rates of quote assets (the house's cap in the markets placed
        in: a reference price changed by another shard applies from this batch), wallets
        (those missing created), discounts, client order ids."""
        wanted = self.wanted
        self.reads = reads
        self.refused_users = set(wanted.users) - reads.active_users.keys()
        self.sequencer._specs_update(reads.markets)
        if wanted.rate_markets:
            for engine in self.engines.values():
                if engine.quote_rate_market in wanted.rate_markets:
                    quote = engine.spec.quote_symbol
                    engine.quote_usd_rate = usd_rates(currencies=[quote], reference_prices=reads.rate_prices).get(quote)
        self.wallets.adopt(
            reads.wallets, create=[key for key in wanted.wallet_keys if key[0] not in self.refused_users]
        )
        self.discounts.adopt(ttx_asset_id=reads.ttx_asset_id, holdings=reads.holdings, users=wanted.holders)
        for pk, user, client_id, fingerprint in reads.client_ids:
            self.client_ids[(user, client_id)] = (pk, fingerprint)

    def _cancels_find(self, order_ids: set[int]) -> set[tuple[int, int, int]]:
        """Cancels of orders this sequencer does not hold in memory (a market not loaded yet,
        an order closed long ago, someone else's, another shard's, none): one statement for
        the batch. Returns the funding wallets of those live in a market it owns."""
        keys: set[tuple[int, int, int]] = set()
        rows = Order.objects.filter(pk__in=order_ids).values_list("pk", "user_id", "market_id", "market__symbol")
        for order_id, user, market_id, symbol in rows:
            self.cancel_rows[order_id] = (user, symbol)
            engine = self.sequencer._market(market_id=market_id)  # loaded now if it owns it
            live = None if engine is None else engine.live.get(order_id)
            if engine is not None and live is not None:
                self.engines[engine.spec.id] = engine
                keys.add(engine.accounts.funding(owner_id=live.user_id, side=live.side))
        return keys

    def apply(self, command: c.Command) -> Deferred:
        try:
            if self._user_refused(command):
                raise CredentialsInvalid("The credentials are not valid.")
            op = command["op"]
            if op == c.PLACE:
                return self._place(command)
            if op == c.CANCEL:
                return self._cancel(command)
            if op == c.CANCEL_ALL:
                return self._cancel_all(command)
            if op == c.REFERENCE_PRICE:
                return self._reference_price(command)
            raise ValueError(f"unknown command {op!r}")
        except ApplicationError as exc:  # refused: nothing of it changed
            answer = c.error_answer(exc)
            return lambda: answer

    def _place(self, command: c.Command) -> Deferred:
        user = int(command["user_id"])
        fields = {name: command.get(name) for name in OrderRequest.__dataclass_fields__}
        request = OrderRequest(**fields)  # type: ignore[arg-type]
        engine = self.sequencer._market(symbol=request.market)
        if engine is None:
            raise MarketNotFoundInRequest(fields={"market": ["No such market."]})
        client_id = request.client_order_id
        known = self.client_ids.get((user, client_id)) if client_id else None
        if known is not None:
            # A repeat (the retry after a 503 or a timeout) answers the order it placed, compared
            # under no market's present rules: also once the market was halted or its tick,
            # step or minimum changed, which would refuse it as a new placement.
            existing, known_fingerprint = known
            repeat = order_request_validate(market=ANY_GRID, request=request)
            if repeat.fingerprint(market_id=engine.spec.id) != known_fingerprint:
                raise DuplicateClientOrderId()
            return lambda: {"status": 200, "order_id": existing if isinstance(existing, int) else existing.id}
        if not engine.spec.is_active:
            raise MarketInactive()
        validated = order_request_validate(market=engine.spec, request=request)
        fingerprint = validated.fingerprint(market_id=engine.spec.id)
        order = LiveOrder(
            seq=next(self.sequencer._seq),
            user_id=user,
            market_id=engine.spec.id,
            side=validated.side,  # the engine's enums already (order_request_validate)
            type=validated.type,
            time_in_force=validated.time_in_force,
            stp=validated.stp,
            price=validated.price,
            stop_price=validated.stop_price,
            quantity=validated.quantity,
            status=OrderStatus.OPEN,
            client_order_id=validated.client_order_id,
            request_fingerprint=fingerprint,
            created_at=self.now,
            updated_at=self.now,
            correlation_id=_correlation_id(command),
        )
        engine.place(order, journal=self.journal, wallets=self.wallets, discount=self.discounts, now=self.now)
        if client_id:
            self.client_ids[(user, client_id)] = (order, fingerprint)
        return lambda: {"status": 201, "order": self._body(order, engine)}

    def _body(self, order: LiveOrder, engine: MarketEngine) -> dict[str, Any]:
        if self._trades_of is None:  # answers come after the write: the journal is complete
            self._trades_of = {}
            for trade in self.journal.trades:
                self._trades_of.setdefault(id(trade.taker), []).append(trade)
                if trade.maker is not None and trade.maker is not trade.taker:
                    self._trades_of.setdefault(id(trade.maker), []).append(trade)
        trades = self._trades_of.get(id(order), [])
        events = [(status.value, reason) for status, reason in order.pending_events]
        return order_body(
            order, symbol=engine.spec.symbol, trades=trades, events=events, at=self.now, at_text=self._moment()
        )

    def _cancel(self, command: c.Command) -> Deferred:
        """Found by id alone when the command names no market (the web tier read nothing);
        answered with the order's contract body, as reading it back answers it."""
        user, order_id = int(command["user_id"]), int(command["order_id"])
        engine = self.sequencer.market_holding(order_id, market_id=_market_id(command))
        order = None if engine is None else engine.live[order_id]
        if engine is None or order is None or order.user_id != user:
            if self.sequencer.closed_owner(order_id) == user or self._closed_in_batch(order_id, user):
                raise OrderNotCancellable()
            row = self.cancel_rows.get(order_id)
            if row is None or row[0] != user:
                raise OrderNotFound()
            if not self.sequencer.owns(row[1]):  # another shard's order: that shard answers
                elsewhere = {**c.error_answer(OrderNotFound()), c.ELSEWHERE: True}
                return lambda: elsewhere
            raise OrderNotCancellable()  # stored as closed (or live in the database only)
        engine.cancel(order, journal=self.journal, wallets=self.wallets, now=self.now)
        self.cancelled.append(order_id)
        return _Late(lambda: {"status": 200, "order_id": order_id, "order": self._cancelled_body(order, engine)})

    def _cancelled_body(self, order: LiveOrder, engine: MarketEngine) -> dict[str, Any]:
        # After the write: the order's columns from memory, its fills and events as stored
        # (this batch's included), read back by the write in the same round trip; what
        # reading the order back (orders.api.serializers.order_output) answers.
        if self.written is None or order.id is None:
            raise ValueError("a cancel is answered after the batch's write")
        return order_body_stored(
            order,
            symbol=engine.spec.symbol,
            history=self.written.histories.get(order.id) or StoredHistory(),
            at=self.now,
            at_text=self._moment(),
        )

    def _moment(self) -> str:
        if self._now_text is None:
            self._now_text = moment_text(self.now) or ""
        return self._now_text

    def _cancel_all(self, command: c.Command) -> Deferred:
        user = int(command["user_id"])
        market_id = command.get("market_id")
        engines = (
            self.sequencer.markets_owned() if market_id is None else [self.sequencer._market(market_id=int(market_id))]
        )
        cancelled: list[int] = []
        for engine in engines:
            if engine is None:
                continue
            for order in sorted(
                (o for o in engine.live.values() if o.user_id == user), key=lambda o: o.seq, reverse=True
            ):
                engine.cancel(order, journal=self.journal, wallets=self.wallets, now=self.now)
                cancelled.append(int(order.id or 0))  # live orders are persisted: they have ids
        return lambda: {"status": 200, "order_ids": cancelled}

    def _closed_in_batch(self, order_id: int, user: int) -> bool:
        """Closed by an earlier command of this batch (not committed yet, so not remembered)."""
        return any(
            order.id == order_id and order.user_id == user and not order.is_live
            for order in self.journal.touched.values()
        )

    def _reference_price(self, command: c.Command) -> Deferred:
        engine = self.sequencer._market(market_id=int(command["market_id"]))
        if engine is None:
            raise MarketNotFound()
        value = parse_amount(command.get("price"))
        tick = engine.spec.price_tick
        if value is None or value <= 0 or not is_multiple_of(value, unit=tick):
            raise InvalidPrice(fields={"price": [f"Must be a positive multiple of the price tick {tick}."]})
        old = engine.spec.reference_price
        band = settings.REFERENCE_PRICE_MAX_MOVE_PERCENT
        anchors = (old, engine.spec.last_price)
        if not command.get("large_move") and not reference_price_move_allowed(
            price=value, anchors=anchors, max_move_percent=band
        ):
            last = "none" if engine.spec.last_price is None else f"{engine.spec.last_price:f}"
            raise InvalidPrice(
                fields={
                    "price": [
                        f"More than {band:f}% away from both the reference price {old:f} "
                        f"and the last price {last}: set it in steps, or confirm with large_move: true."
                    ]
                }
            )
        engine.set_reference_price(value, journal=self.journal)
        logger.info("reference price set", extra={"market": engine.spec.symbol, "from": str(old), "to": str(value)})
        return lambda: {"status": 200}

    def closed(self) -> list[tuple[int, int]]:
        """(id, owner) of the orders this batch made terminal."""
        return [
            (order.id, order.user_id)
            for order in [*self.journal.new_orders, *self.journal.touched.values()]
            if order.id is not None and not order.status.is_live
        ]

    def settle(self) -> None:
        """Written: memory forgets what is only history now; new live orders become findable."""
        for order in [*self.journal.new_orders, *self.journal.touched.values()]:
            order.pending_events.clear()
        for order in self.journal.new_orders:
            self.sequencer._markets[order.market_id].registered(order)

    def committed(self, written: Written) -> None:
        trades = self.journal.trades
        # Counted first, each label's counter incremented once (a label look-up per trade
        # and order was most of this work, on a thread that takes the GIL from the batches).
        traded = Counter((trade.taker.market_id, trade.maker is None) for trade in trades)
        for (market_id, house), count in traded.items():
            TRADES.labels(
                market=self.sequencer._markets[market_id].spec.symbol,
                counterparty=(Counterparty.HOUSE if house else Counterparty.BOOK).value,
            ).inc(count)
        finals = Counter((order.status.value, order.status_reason or "") for order in self.journal.new_orders)
        for (final, why), count in finals.items():
            ORDERS_FINAL.labels(status=final, reason=why).inc(count)
        if trades:
            fees: dict[int, Decimal] = {}
            for trade in trades:
                fees[trade.taker.market_id] = fees.get(trade.taker.market_id, Decimal(0)) + (
                    trade.settled.taker_fee + trade.settled.maker_fee
                )
            for market_id, total in fees.items():
                FEES.labels(asset=_quote_symbol(market_id)).inc(float(total))
            trades_committed.send(sender=Sequencer, outbox_ids=written.outbox_ids)
        if lifecycle.isEnabledFor(logging.INFO):
            for order, status, reason in written.changes:
                with correlation_context(order.correlation_id or None):
                    lifecycle.info(
                        "order %s: -> %s",
                        order.id,
                        status,
                        extra={"order_id": order.id, "to_status": status, "reason": reason},
                    )


_QUOTES: dict[int, str] = {}


class _Overdue(Exception):
    """Raised just before a batch commits when a command's sender has stopped waiting
    (commands.ANSWER_BY): committed, it would be carried out behind its client's 503. The
    batch is rolled back and taken back in memory, then run again without the commands whose
    `apply_by` has passed (Sequencer._without_overdue)."""


def _overdue_checked(commands: list[c.Command]) -> None:
    now = time.time()
    if any(c.deadline_past(command, c.ANSWER_BY, now) > 0 for command in commands):
        raise _Overdue()


def _leader_checked(fence: LeaderFence | None) -> None:
    """In a transaction of the engine, before anything is written: fails it (55000, an
    OperationalError: 503) once another engine may lead the shard."""
    if fence is not None:
        with connection.cursor() as cursor:
            cursor.execute(fence.SQL, fence.params)


def _batch_begins(commands: list[c.Command]) -> None:
    """Before any batch (whichever way it runs): the system users exist, the batch counted."""
    system_user_ids()  # created (once) outside any batch: a rollback must not undo them
    ENGINE_QUEUE_DEPTH.set(len(commands))
    ENGINE_BATCH_COMMANDS.observe(len(commands))


def _quote_symbol(market_id: int) -> str:
    if market_id not in _QUOTES:
        _QUOTES[market_id] = Market.objects.select_related("quote").get(pk=market_id).quote.symbol
    return _QUOTES[market_id]


# How long a lost batch connection's server process may take to end (or finish its
# COMMIT) before the batch's outcome is taken as unknown: the web worker waits 2 s in all.
COMMIT_OUTCOME_WAIT_SECONDS = 1.0
# The lost session has ended, or is out of its transaction (its COMMIT landed or not).
_SESSION_SETTLED = "SELECT coalesce(bool_and(state = 'idle'), true) FROM pg_stat_activity WHERE pid = %s"


def _commit_outcome(*, backend_pid: int, first_order_id: int | None) -> bool | None:
    """Whether a batch whose connection was lost while it committed did commit: asked on a
    new connection, once the old session has ended or left its transaction (until then its
    COMMIT may still land), by the first order the batch inserted. None when that cannot be
    told: the database still away, the session still in its transaction after
    COMMIT_OUTCOME_WAIT_SECONDS, or a batch that inserted no order (cancels: run again, a
    cancel answers that the order is closed; a 503 lets the client ask)."""
    if first_order_id is None:
        return None
    with suppress(DatabaseError):  # closed all the same
        connection.close()
    deadline = time.monotonic() + COMMIT_OUTCOME_WAIT_SECONDS
    try:
        with connection.cursor() as cursor:
            while True:
                cursor.execute(_SESSION_SETTLED, [backend_pid])
                if cursor.fetchone()[0]:
                    break
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.01)
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {Order._meta.db_table} WHERE id = %s)", [first_order_id])  # noqa: S608
            return bool(cursor.fetchone()[0])
    except DatabaseError:
        return None


def _market_row(engine: MarketEngine) -> tuple[Any, ...]:
    """The market's row as the sequencer holds it (orders.sequencer.reads.MARKET_FIELDS)."""
    spec = engine.spec
    return (spec.id, spec.is_active, spec.price_tick, spec.quantity_step, spec.min_quantity, spec.reference_price)


def _market_id(command: c.Command) -> int | None:
    given = command.get("market_id")
    return None if given is None else int(given)


def _correlation_id(command: c.Command) -> str:
    given = command.get("correlation_id")
    return str(given) if given and given != "-" else correlation_id_new()


_FAILED: c.Answer = c.error_answer(InternalError())


def _processing_failed(
    command: c.Command, *, fence: LeaderFence | None = None, clock: EngineClock | None = None
) -> c.Answer:
    """A command that fails alone for an unexpected reason: a placement is recorded as an
    order in `error` (nothing else of it happened), anything else answers 500. An engine
    that no longer leads records nothing (503)."""
    if command.get("op") != c.PLACE:
        return _FAILED
    try:
        with transaction.atomic(durable=True):
            _leader_checked(fence)
            market = Market.objects.filter(symbol=str(command.get("market"))).first()
            if market is None:
                raise MarketNotFoundInRequest()
            fields = {name: command.get(name) for name in OrderRequest.__dataclass_fields__}
            validated = order_request_validate(market=market, request=OrderRequest(**fields))  # type: ignore[arg-type]
            now = (clock or EngineClock()).now()
            order = Order.objects.create(
                user_id=int(command["user_id"]),
                market=market,
                side=validated.side,
                type=validated.type,
                time_in_force=validated.time_in_force,
                stp=validated.stp,
                price=validated.price,
                stop_price=validated.stop_price,
                quantity=validated.quantity,
                client_order_id=validated.client_order_id,
                request_fingerprint=validated.fingerprint(market_id=market.pk),
                status=OrderStatus.ERROR,
                status_reason="processing_failed",
                created_at=now,
                updated_at=now,
                closed_at=now,
            )
            OrderEvent.objects.create(order=order, status=OrderStatus.ERROR, reason="processing_failed", at=now)
    except ApplicationError as exc:
        return c.error_answer(exc)
    except OperationalError as exc:  # the database away, or another engine leads
        logger.warning("recording a failed order refused: %s", exc)
        return c.error_answer(ServiceUnavailable(retry_after=1))
    except Exception:
        logger.exception("recording a failed order failed")
        return _FAILED
    # Counted and named as a batch's orders are (_Batch.committed): its client has a 201 with
    # status `error` (no 5xx), and the batch's "batch failed" line names no order.
    ORDERS_FINAL.labels(status=OrderStatus.ERROR.value, reason="processing_failed").inc()
    with correlation_context(str(command.get("correlation_id") or "") or None):
        logger.error(
            "order %s recorded as error: processing failed (see the batch's traceback above)",
            order.pk,
            extra={
                "order_id": order.pk,
                "user_id": order.user_id,
                "market": market.symbol,
                "client_order_id": order.client_order_id,
            },
        )
    return {"status": 201, "order_id": order.pk}
