"""Placing, matching, settling and cancelling orders.

One durable transaction per order: the market row is locked first (matching is
serialized per market, markets never wait on each other), the pure engine decides,
then every wallet involved is locked in one statement in ascending id order and the
result is settled: fills, fees, balances, maker and taker states, events. Nothing is
ever matched but not settled, and no order is left in an intermediate state."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from core.db import money_param, rows_select, rows_update
from core.db import quote_name as q
from core.errors import ApplicationError
from core.logging import correlation_id_get
from core.metrics import FEES, ORDER_PLACE_SECONDS, ORDERS_FINAL, TRADES
from orders import engine
from orders.errors import (
    DuplicateClientOrderId,
    InsufficientFunds,
    MarketInactive,
    MarketNotFoundInBody,
    OrderNotCancellable,
    OrderNotFound,
)
from orders.locks import lock_market, lock_market_by_symbol, lock_market_of_order
from orders.models import (
    LIVE_STATUSES,
    Asset,
    Market,
    Order,
    OrderEvent,
    OrderSide,
    OrderStatus,
    OrderType,
    Trade,
    Wallet,
)
from orders.selectors.book import resting_makers
from orders.services.ledger import LockedLedger, WalletKey
from orders.services.order_requests import OrderRequest, ValidatedOrder, order_request_validate
from orders.system_accounts import fee_account_user_id, house_user_id, system_user_ids

logger = logging.getLogger("orders.lifecycle")
T = TypeVar("T")
ZERO = Decimal(0)
MAX_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class PlaceResult:
    order_id: int
    created: bool
    # The new order as committed, with its market, fills and events loaded, when nothing
    # may have changed it since (no stop order executed after it); else None: read it.
    order: Order | None = None


@dataclass(slots=True)
class _Settlement:
    """What one matching transaction writes, collected before the bulk statements."""

    now: datetime
    trades: list[Trade] = field(default_factory=list)
    events: list[OrderEvent] = field(default_factory=list)
    transitions: list[tuple[Order, str | None, str, str | None]] = field(default_factory=list)
    touched_makers: dict[int, Order] = field(default_factory=dict)

    def transition(self, order: Order, status: str, reason: str | None = None) -> None:
        previous = order.status if order.pk else None
        order.status = status
        order.status_reason = reason
        order.updated_at = self.now
        if status in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.ERROR):
            order.closed_at = self.now
        if status == OrderStatus.FILLED:
            order.filled_at = self.now
        self.transitions.append((order, previous, status, reason))


# --- placing -------------------------------------------------------------------------


def order_place(*, user: User, request: OrderRequest) -> PlaceResult:
    started = time.perf_counter()
    result = _order_place(user=user, request=request)
    ORDER_PLACE_SECONDS.labels(type=request.type).observe(time.perf_counter() - started)
    return result


@dataclass(slots=True)
class _Placement:
    """What the placing transaction established before it failed, for the error paths."""

    market_id: int | None = None
    validated: ValidatedOrder | None = None
    fingerprint: str = ""


def _order_place(*, user: User, request: OrderRequest) -> PlaceResult:
    # The platform's accounts are created (the first time) here, committed on their own:
    # created inside the matching transaction, a rollback (insufficient funds, a retried
    # deadlock) would undo the rows while their ids stayed cached in the process.
    system_user_ids()
    placement = _Placement()
    try:
        outcome = _retrying(lambda: _order_place_atomic(user_id=user.pk, request=request, placement=placement))
    except IntegrityError:
        # Two requests with one client_order_id raced; the loser answers like a repeat.
        validated = placement.validated
        if validated is not None and validated.client_order_id:
            existing = _order_by_client_id(
                user_id=user.pk, client_order_id=validated.client_order_id, fingerprint=placement.fingerprint
            )
            if existing is not None:
                return PlaceResult(order_id=existing, created=False)
        raise
    except (ApplicationError, OperationalError):
        raise
    except Exception:
        if placement.validated is None or placement.market_id is None:
            raise  # failed before there was an order to record
        # A bug must not leave anything half-applied (the transaction rolled back) nor
        # leave the client without a clear answer: record the order as `error`.
        logger.exception("order processing failed", extra={"user_id": user.pk, "market": request.market})
        order_id = _order_record_error(
            user_id=user.pk,
            market_id=placement.market_id,
            validated=placement.validated,
            fingerprint=placement.fingerprint,
        )
        return PlaceResult(order_id=order_id, created=True)
    if isinstance(outcome, int):
        return PlaceResult(order_id=outcome, created=False)  # a repeated client_order_id
    order, stops_due = outcome
    if stops_due and stop_orders_trigger(market_id=order.market_id):
        return PlaceResult(order_id=order.pk, created=True)  # a stop may have traded with it
    return PlaceResult(order_id=order.pk, created=True, order=order)


def _order_by_client_id(*, user_id: int, client_order_id: str, fingerprint: str) -> int | None:
    found = (
        Order.objects.filter(user_id=user_id, client_order_id=client_order_id)
        .values_list("pk", "request_fingerprint")
        .first()
    )
    if found is None:
        return None
    if found[1] != fingerprint:
        raise DuplicateClientOrderId()
    return int(found[0])


def _retrying(work: Callable[[], T]) -> T:
    """Retry a whole transaction after a deadlock, a serialization failure or a busy
    SQLite database; the rolled-back attempt left nothing behind."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return work()
        except OperationalError as exc:
            retryable = getattr(getattr(exc, "__cause__", None), "sqlstate", None) in {"40P01", "40001"} or (
                "database is locked" in str(exc)
            )
            if not retryable or attempt == MAX_ATTEMPTS:
                raise
            logger.warning("transaction retried", extra={"attempt": attempt, "error": str(exc)[:200]})
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")


def _order_place_atomic(*, user_id: int, request: OrderRequest, placement: _Placement) -> int | tuple[Order, bool]:
    """The id of the order a repeated client_order_id names; else the new order (its
    fills and events loaded) and whether a stop order may now fire."""
    with transaction.atomic(durable=True):
        # Validated against the locked row: tick, step and status cannot change meanwhile.
        market = lock_market_by_symbol(symbol=request.market)
        if market is None:
            raise MarketNotFoundInBody(fields={"market": ["No such market."]})
        if not market.is_active:
            raise MarketInactive()
        validated = order_request_validate(market=market, request=request)
        fingerprint = validated.fingerprint(market_id=market.pk)
        placement.market_id, placement.validated, placement.fingerprint = market.pk, validated, fingerprint
        if validated.client_order_id:
            existing = _order_by_client_id(
                user_id=user_id, client_order_id=validated.client_order_id, fingerprint=fingerprint
            )
            if existing is not None:
                return existing
        now = timezone.now()
        order = Order(
            user_id=user_id,
            market=market,
            side=validated.side,
            type=validated.type,
            time_in_force=validated.time_in_force,
            stp=validated.stp,
            price=validated.price,
            stop_price=validated.stop_price,
            quantity=validated.quantity,
            client_order_id=validated.client_order_id,
            request_fingerprint=fingerprint,
            created_at=now,
            updated_at=now,
        )
        settlement = _Settlement(now=now)
        if validated.is_stop and not _stop_fires(order=order, market=market):
            _stop_rest(order=order, market=market, settlement=settlement)
        else:
            if validated.is_stop:
                settlement.transition(order, OrderStatus.PENDING_TRIGGER)
                _stop_mark_triggered(order=order, settlement=settlement)
            else:
                settlement.transition(order, OrderStatus.OPEN)
            _execute(order=order, market=market, settlement=settlement)
        events = _write(settlement=settlement, market=market, taker=order)
        # Only a trade moves the last price, and only a new last price can fire a stop (a
        # stop already reached executes at its own placement). Checked under the lock: no
        # stop can be placed before this commits.
        stops_due = bool(settlement.trades) and _stops_due(market=market)
    # What the answer shows, loaded as order_get_for_user loads it: a new order has no
    # maker fills yet; its trades and events are the ones just written.
    order._prefetched_objects_cache = {  # type: ignore[attr-defined]
        "events": [event for event in events if event.order is order],
        "taker_trades": list(settlement.trades),
        "maker_trades": [],
    }
    return order, stops_due


def _present(value: Decimal | None, name: str) -> Decimal:
    """A column the order's type makes mandatory (validated at placement, enforced here)."""
    if value is None:
        raise ValueError(f"order {name} missing")
    return value


def _funding_key(*, order: Order, market: Market) -> WalletKey:
    asset_id = market.quote_id if order.side == OrderSide.BUY else market.base_id
    return (order.user_id, asset_id, 0)


def _executes_as_market(order: Order) -> bool:
    return order.type != OrderType.LIMIT


def _required_lock(*, order: Order, market: Market, reference_price: Decimal | None = None) -> Decimal:
    remaining = order.quantity - order.filled_quantity
    if order.side == OrderSide.SELL:
        return remaining
    if not _executes_as_market(order):
        price = _present(order.price, "price")
        return engine.buy_lock_amount(quantity=remaining, price=price, taker_fee_bps=settings.TAKER_FEE_BPS)
    return engine.market_buy_lock_amount(
        quantity=remaining,
        reference_price=reference_price or market.reference_price,
        max_slippage_bps=settings.MAX_MARKET_SLIPPAGE_BPS,
        taker_fee_bps=settings.TAKER_FEE_BPS,
    )


def _house_inventory(*, market: Market) -> engine.HouseInventory | None:
    if not settings.AUTO_FILL_ENABLED:
        return None
    wallets = rows_select(
        Wallet,
        where=f"{q('user_id')} = %s AND {q('bucket')} = %s AND {q('asset_id')} IN (%s, %s)",
        params=[house_user_id(), market.pk, market.base_id, market.quote_id],
        fields=["id", "asset_id", "balance", "locked"],
    )
    available = {wallet.asset_id: wallet.balance - wallet.locked for wallet in wallets}
    return engine.HouseInventory(
        base_available=available.get(market.base_id, ZERO),
        quote_available=available.get(market.quote_id, ZERO),
        max_notional=settings.MAX_AUTO_FILL_USD,
        slippage_percent=settings.AUTO_FILL_SLIPPAGE_PERCENT,
    )


def _execute(*, order: Order, market: Market, settlement: _Settlement) -> None:
    """Match `order` as the taker and settle the result. `order.locked_amount` is what
    it already holds (a triggered stop); the rest of its lock is taken here."""
    as_market = _executes_as_market(order)
    side = engine.Side(order.side)
    makers: dict[int, Order] = {}

    def book() -> Iterator[engine.RestingOrder]:
        for maker in resting_makers(
            market_id=market.pk, side=OrderSide.SELL if side is engine.Side.BUY else OrderSide.BUY
        ):
            makers[maker.pk] = maker
            yield engine.RestingOrder(
                id=maker.pk,
                owner_id=maker.user_id,
                price=_present(maker.price, "price"),
                remaining=maker.quantity - maker.filled_quantity,
            )

    result = engine.match(
        taker=engine.TakerOrder(
            owner_id=order.user_id,
            side=side,
            quantity=order.quantity - order.filled_quantity,
            limit_price=None if as_market else order.price,
            time_in_force=engine.TimeInForce(order.time_in_force),
            stp=engine.SelfTradePrevention(order.stp),
        ),
        makers=book(),
        rules=engine.MarketRules(
            reference_price=market.reference_price,
            max_slippage_bps=settings.MAX_MARKET_SLIPPAGE_BPS,
            price_tick=market.price_tick,
            quantity_step=market.quantity_step,
            house=_house_inventory(market=market) if as_market else None,
        ),
    )

    fee_user = fee_account_user_id()
    house_user = house_user_id()
    owners = {order.user_id} | {fill.maker_owner_id for fill in result.fills if fill.maker_owner_id is not None}
    keys: set[WalletKey] = {(owner, asset, 0) for owner in owners for asset in (market.base_id, market.quote_id)}
    if result.fills:
        keys.add((fee_user, market.quote_id, market.pk))
    if result.house_fill is not None:
        keys |= {(house_user, market.base_id, market.pk), (house_user, market.quote_id, market.pk)}
    ledger = LockedLedger(keys=keys)

    funding = _funding_key(order=order, market=market)
    required = _required_lock(order=order, market=market)
    if required > order.locked_amount:
        ledger.lock(funding, required - order.locked_amount)  # raises InsufficientFunds: nothing is written
    elif required < order.locked_amount:
        ledger.release(funding, order.locked_amount - required)
    order.locked_amount = required

    discounts = _fee_discounts(user_ids=owners) if result.fills else {}
    for fill in result.fills:
        maker = makers[fill.maker_id] if fill.maker_id is not None else None
        _settle_fill(
            fill=fill,
            taker=order,
            maker=maker,
            market=market,
            ledger=ledger,
            discounts=discounts,
            settlement=settlement,
        )

    for maker_id in result.expired_maker_ids:
        maker = makers[maker_id]
        ledger.release(_funding_key(order=maker, market=market), maker.locked_amount)
        maker.locked_amount = ZERO
        settlement.transition(maker, OrderStatus.EXPIRED, engine.ExpiryReason.SELF_TRADE_PREVENTION)
        settlement.touched_makers[maker.pk] = maker

    if result.outcome is engine.Outcome.FILLED:
        settlement.transition(order, OrderStatus.FILLED)
    elif result.outcome is engine.Outcome.REST:
        if order.filled_quantity > 0:
            settlement.transition(order, OrderStatus.PARTIALLY_FILLED)
    else:
        settlement.transition(order, OrderStatus.EXPIRED, result.reason)
    if order.status not in LIVE_STATUSES and order.locked_amount:
        ledger.release(funding, order.locked_amount)
        order.locked_amount = ZERO
    for maker in settlement.touched_makers.values():
        if maker.status not in LIVE_STATUSES and maker.locked_amount:
            ledger.release(_funding_key(order=maker, market=market), maker.locked_amount)
            maker.locked_amount = ZERO
    ledger.flush()


def _fee_discounts(*, user_ids: set[int]) -> dict[int, Decimal]:
    """Each user's discount from their TTX holdings (every bucket)."""
    ids = sorted(user_ids)
    ttx = f"SELECT {q('id')} FROM {q(Asset._meta.db_table)} WHERE {q('symbol')} = %s"  # noqa: S608
    wallets = rows_select(
        Wallet,
        where=f"{q('user_id')} IN ({', '.join(['%s'] * len(ids))}) AND {q('asset_id')} = ({ttx})",
        params=[*ids, settings.TTX_ASSET],
        fields=["id", "user_id", "balance"],
    )
    holdings: dict[int, Decimal] = {}
    for wallet in wallets:
        holdings[wallet.user_id] = holdings.get(wallet.user_id, ZERO) + wallet.balance
    return {user_id: engine.fee_discount_for(holdings.get(user_id, ZERO)) for user_id in user_ids}


def _settle_fill(
    *,
    fill: engine.Fill,
    taker: Order,
    maker: Order | None,
    market: Market,
    ledger: LockedLedger,
    discounts: dict[int, Decimal],
    settlement: _Settlement,
) -> None:
    notional = fill.notional
    taker_fee = engine.calculate_fee(
        notional=notional, fee_bps=settings.TAKER_FEE_BPS, discount=discounts[taker.user_id]
    )
    # The house is the platform itself: it pays no fee to itself.
    maker_fee = (
        ZERO
        if maker is None
        else engine.calculate_fee(notional=notional, fee_bps=settings.MAKER_FEE_BPS, discount=discounts[maker.user_id])
    )
    house = house_user_id()
    counterparty_user = maker.user_id if maker is not None else house
    bucket = 0 if maker is not None else market.pk
    base, quote = market.base_id, market.quote_id
    buyer_is_taker = taker.side == OrderSide.BUY

    # Taker side.
    if buyer_is_taker:
        ledger.spend_locked((taker.user_id, quote, 0), notional + taker_fee)
        taker.locked_amount -= notional + taker_fee
        ledger.credit((taker.user_id, base, 0), fill.quantity)
    else:
        ledger.spend_locked((taker.user_id, base, 0), fill.quantity)
        taker.locked_amount -= fill.quantity
        ledger.credit((taker.user_id, quote, 0), notional - taker_fee)
    # Counterparty side: a resting order spends what it locked; the house spends inventory.
    if maker is not None:
        if buyer_is_taker:
            ledger.spend_locked((maker.user_id, base, 0), fill.quantity)
            maker.locked_amount -= fill.quantity
            ledger.credit((maker.user_id, quote, 0), notional - maker_fee)
        else:
            ledger.spend_locked((maker.user_id, quote, 0), notional + maker_fee)
            maker.locked_amount -= notional + maker_fee
            ledger.credit((maker.user_id, base, 0), fill.quantity)
        _order_fill(order=maker, fill=fill, fee=maker_fee)
        settlement.touched_makers[maker.pk] = maker
        maker_status = OrderStatus.FILLED if maker.filled_quantity == maker.quantity else OrderStatus.PARTIALLY_FILLED
        if maker.status != maker_status:
            settlement.transition(maker, maker_status)
        else:
            maker.updated_at = settlement.now
    elif buyer_is_taker:
        ledger.debit((house, base, bucket), fill.quantity)
        ledger.credit((house, quote, bucket), notional)
    else:
        ledger.debit((house, quote, bucket), notional)
        ledger.credit((house, base, bucket), fill.quantity)
    ledger.credit((fee_account_user_id(), quote, market.pk), taker_fee + maker_fee)
    _order_fill(order=taker, fill=fill, fee=taker_fee)
    settlement.trades.append(
        Trade(
            market=market,
            price=fill.price,
            quantity=fill.quantity,
            quote_amount=notional,
            taker_side=taker.side,
            taker_order=taker,
            maker_order=maker,
            taker_user_id=taker.user_id,
            maker_user_id=counterparty_user,
            taker_fee=taker_fee,
            maker_fee=maker_fee,
            is_house=maker is None,
            reference_price=market.reference_price,
            executed_at=settlement.now,
        )
    )


def _order_fill(*, order: Order, fill: engine.Fill, fee: Decimal) -> None:
    order.filled_quantity += fill.quantity
    order.quote_filled += fill.notional
    order.fee_paid += fee


def _write(*, settlement: _Settlement, market: Market, taker: Order) -> list[OrderEvent]:
    """Flush one matching transaction: a constant number of statements plus none per maker.
    Returns the events written."""
    taker.save()
    for trade in settlement.trades:
        trade.taker_order = taker
    if settlement.trades:
        Trade.objects.bulk_create(settlement.trades)
        market.last_price = settlement.trades[-1].price
        market.save(update_fields=["last_price"])
        from revenue.services import post_trade_jobs_record

        post_trade_jobs_record(trades=settlement.trades)
    transaction.on_commit(partial(_metrics_record, settlement=settlement, market=market, taker=taker))
    if settlement.touched_makers:
        rows_update(
            objects=list(settlement.touched_makers.values()),
            fields=[
                "filled_quantity",
                "quote_filled",
                "fee_paid",
                "locked_amount",
                "status",
                "status_reason",
                "updated_at",
                "filled_at",
                "closed_at",
            ],
        )
    events = OrderEvent.objects.bulk_create(
        [
            OrderEvent(order=order, status=status, reason=reason, at=settlement.now)
            for order, _, status, reason in settlement.transitions
        ]
    )
    _log_transitions_on_commit(settlement.transitions)
    return events


def _metrics_record(*, settlement: _Settlement, market: Market, taker: Order) -> None:
    ORDERS_FINAL.labels(status=taker.status, reason=taker.status_reason or "").inc()
    for trade in settlement.trades:
        TRADES.labels(market=market.symbol, counterparty="house" if trade.is_house else "book").inc()
        FEES.labels(asset=market.quote.symbol).inc(float(trade.taker_fee + trade.maker_fee))


def _log_transitions_on_commit(transitions: list[tuple[Order, str | None, str, str | None]]) -> None:
    """Log each status change once it is committed, under the request's correlation id
    (captured now: the commit may run the callback outside the request's context)."""
    correlation_id = correlation_id_get()
    transaction.on_commit(lambda: _log_transitions(transitions, correlation_id=correlation_id))


def _log_transitions(transitions: list[tuple[Order, str | None, str, str | None]], *, correlation_id: str) -> None:
    for order, previous, status, reason in transitions:
        logger.info(
            "order %s: %s -> %s",
            order.pk,
            previous,
            status,
            extra={
                "order_id": order.pk,
                "from_status": previous,
                "to_status": status,
                "reason": reason,
                "correlation_id": correlation_id,
            },
        )


def _order_record_error(*, user_id: int, market_id: int, validated: ValidatedOrder, fingerprint: str) -> int:
    with transaction.atomic(durable=True):
        now = timezone.now()
        order = Order.objects.create(
            user_id=user_id,
            market_id=market_id,
            side=validated.side,
            type=validated.type,
            time_in_force=validated.time_in_force,
            stp=validated.stp,
            price=validated.price,
            stop_price=validated.stop_price,
            quantity=validated.quantity,
            client_order_id=validated.client_order_id,
            request_fingerprint=fingerprint,
            status=OrderStatus.ERROR,
            status_reason="processing_failed",
            created_at=now,
            updated_at=now,
            closed_at=now,
        )
        OrderEvent.objects.create(order=order, status=OrderStatus.ERROR, reason="processing_failed", at=now)
        return int(order.pk)


# --- stops ---------------------------------------------------------------------------


def _stop_fires(*, order: Order, market: Market) -> bool:
    if market.last_price is None:
        return False
    return engine.stop_triggered(
        order_type=engine.OrderType(order.type),
        side=engine.Side(order.side),
        stop_price=_present(order.stop_price, "stop_price"),
        last_price=market.last_price,
    )


def _stop_rest(*, order: Order, market: Market, settlement: _Settlement) -> None:
    """A stop waits for its trigger holding the funds it may need: for a buy, a market
    buy's lock at the higher of the reference and the stop price."""
    reference = max(market.reference_price, _present(order.stop_price, "stop_price"))
    required = _required_lock(order=order, market=market, reference_price=reference)
    ledger = LockedLedger(keys=[_funding_key(order=order, market=market)])
    ledger.lock(_funding_key(order=order, market=market), required)
    order.locked_amount = required
    settlement.transition(order, OrderStatus.PENDING_TRIGGER)
    ledger.flush()


def _stop_mark_triggered(*, order: Order, settlement: _Settlement) -> None:
    order.triggered_at = settlement.now
    settlement.transition(order, OrderStatus.OPEN, "triggered")


# Mirrors engine.stop_triggered so the index on (market, stop_price) narrows the scan;
# each candidate is re-checked with the engine's rule under the market lock.
_STOP_REACHED = (
    (OrderType.STOP_LOSS, OrderSide.SELL, ">="),
    (OrderType.STOP_LOSS, OrderSide.BUY, "<="),
    (OrderType.TAKE_PROFIT, OrderSide.SELL, "<="),
    (OrderType.TAKE_PROFIT, OrderSide.BUY, ">="),
)


def _stop_first_triggered(*, market_id: int, last_price: Decimal) -> int | None:
    """The oldest pending stop order of the market that `last_price` has reached."""
    reached = " OR ".join(
        f"({q('type')} = %s AND {q('side')} = %s AND {q('stop_price')} {operator} %s)" for *_, operator in _STOP_REACHED
    )
    found = rows_select(
        Order,
        where=f"{q('market_id')} = %s AND {q('status')} = %s AND ({reached})",
        params=[
            market_id,
            OrderStatus.PENDING_TRIGGER.value,
            *(value for kind, side, _ in _STOP_REACHED for value in (kind.value, side.value, money_param(last_price))),
        ],
        fields=["id"],
        order_by=q("id"),
        limit=1,
    )
    return found[0].pk if found else None


def _stops_due(*, market: Market) -> bool:
    last_price = market.last_price
    return last_price is not None and _stop_first_triggered(market_id=market.pk, last_price=last_price) is not None


def stop_orders_trigger(*, market_id: int, limit: int = 200) -> int:
    """Execute every stop order of the market that the last trade price has reached,
    oldest first, each in its own transaction; triggered stops can trigger others."""
    executed = 0
    while executed < limit:
        last_price = Market.objects.filter(pk=market_id).values_list("last_price", flat=True).first()
        if last_price is None:
            return executed
        candidate = _stop_first_triggered(market_id=market_id, last_price=last_price)
        if candidate is None:
            return executed
        _retrying(lambda: _stop_execute(order_id=candidate))  # noqa: B023  (called at once)
        executed += 1
    return executed


def _stop_execute(*, order_id: int) -> None:
    try:
        with transaction.atomic(durable=True):
            market_id = Order.objects.filter(pk=order_id).values_list("market_id", flat=True).get()
            market = lock_market(market_id=market_id)
            order = Order.objects.get(pk=order_id)
            if order.status != OrderStatus.PENDING_TRIGGER or not _stop_fires(order=order, market=market):
                return
            settlement = _Settlement(now=timezone.now())
            _stop_mark_triggered(order=order, settlement=settlement)
            _execute(order=order, market=market, settlement=settlement)
            _write(settlement=settlement, market=market, taker=order)
    except InsufficientFunds:
        _stop_fail(order_id=order_id, reason="insufficient_funds")
    except (ApplicationError, OperationalError):
        raise
    except Exception:
        logger.exception("stop order processing failed", extra={"order_id": order_id})
        _stop_fail(order_id=order_id, reason="processing_failed")


def _stop_fail(*, order_id: int, reason: str) -> None:
    """A triggered stop that cannot execute ends in `error` with its funds released."""
    with transaction.atomic(durable=True):
        market_id = Order.objects.filter(pk=order_id).values_list("market_id", flat=True).get()
        market = lock_market(market_id=market_id)
        order = Order.objects.get(pk=order_id)
        if order.status != OrderStatus.PENDING_TRIGGER:
            return
        settlement = _Settlement(now=timezone.now())
        _release_and_close(order=order, market=market, settlement=settlement, status=OrderStatus.ERROR, reason=reason)
        order.save()
        OrderEvent.objects.bulk_create(
            [OrderEvent(order=o, status=s, reason=r, at=settlement.now) for o, _, s, r in settlement.transitions]
        )
        _log_transitions_on_commit(settlement.transitions)


def _release_and_close(*, order: Order, market: Market, settlement: _Settlement, status: str, reason: str) -> None:
    if order.locked_amount:
        key = _funding_key(order=order, market=market)
        ledger = LockedLedger(keys=[key])
        ledger.release(key, order.locked_amount)
        ledger.flush()
        order.locked_amount = ZERO
    settlement.transition(order, status, reason)
    if status == OrderStatus.CANCELLED:
        order.cancelled_at = settlement.now


# --- cancelling ------------------------------------------------------------------------


def order_cancel(*, user: User, order_id: int) -> int:
    return _retrying(lambda: _order_cancel_atomic(user_id=user.pk, order_id=order_id))


def _order_cancel_atomic(*, user_id: int, order_id: int) -> int:
    with transaction.atomic(durable=True):
        market = lock_market_of_order(order_id=order_id, user_id=user_id)
        if market is None:
            raise OrderNotFound()
        order = Order.objects.get(pk=order_id)  # stable: orders change only under their market's lock
        if order.status not in LIVE_STATUSES:
            raise OrderNotCancellable()
        settlement = _Settlement(now=timezone.now())
        _release_and_close(
            order=order, market=market, settlement=settlement, status=OrderStatus.CANCELLED, reason="user_cancelled"
        )
        order.save()
        OrderEvent.objects.bulk_create(
            [OrderEvent(order=o, status=s, reason=r, at=settlement.now) for o, _, s, r in settlement.transitions]
        )
        _log_transitions_on_commit(settlement.transitions)
        return int(order.pk)
