"""Ledger invariants that must hold after any sequence of order operations.

`assert_invariants()` is called at the end of every test that moves money:
- every asset is conserved: what was deposited equals the sum of all balances
  (traders, house, fee account), `orders.selectors.ledger.ledger_check()`;
- no wallet is negative and none has more locked than its balance;
- a trader's `locked` (bucket 0) equals the sum of `locked_amount` of that trader's live
  orders funded from that asset (quote for buys, base for sells); system sub-wallets
  (buckets > 0) never hold locks;
- terminal orders hold nothing; a resting order holds exactly what its remainder needs (a
  sell its remaining base, a buy its remainder's lock at its price; after a change of the
  fee settings, a buy at least its remainder's notional); no order is
  overfilled; `partially_filled` rests only for GTC limit orders; market / IOC / FOK
  orders are never left resting; a FOK order is filled completely or not at all;
- per order, the trades add up to its `filled_quantity`, `quote_filled` and `fee_paid`;
- no trade is a self-trade.
A handful of aggregate queries, whatever the number of orders."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.conf import settings
from django.db.models import Case, F, Q, When

from orders.engine.fees import buy_lock_amount
from orders.engine.money import quantize_up
from orders.models import LIVE_STATUSES, TERMINAL_STATUSES, Order, OrderSide, OrderStatus, Trade, Wallet
from orders.selectors.ledger import ledger_check

ZERO = Decimal(0)


def expected_locks() -> dict[tuple[int, int], Decimal]:
    """(user id, asset id) -> sum of locked_amount over that user's live orders funded by the asset
    (summed here, exactly: SQLite would sum in floating point)."""
    rows = (
        Order.objects.filter(status__in=LIVE_STATUSES)
        .annotate(
            funding_asset=Case(When(side=OrderSide.BUY, then=F("market__quote_id")), default=F("market__base_id"))
        )
        .values_list("user_id", "funding_asset", "locked_amount")
    )
    totals: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for user_id, asset_id, locked in rows:
        totals[(user_id, asset_id)] += locked
    return {key: total for key, total in totals.items() if total}


def assert_invariants(*, market_id: int | None = None, fee_rates_changed: bool = False) -> None:
    """Check everything; with `market_id`, the per-order checks look at that market only
    (the ledger and wallet checks always cover everything). `fee_rates_changed`: the test
    changed the fee settings while buys rested, so their locks are of the old rates."""
    unbalanced = [row for row in ledger_check() if not row.balanced]
    assert not unbalanced, f"ledger not balanced: {unbalanced}"

    bad_wallets = list(
        Wallet.objects.filter(Q(balance__lt=0) | Q(locked__lt=0) | Q(locked__gt=F("balance"))).values_list(
            "user_id", "asset_id", "bucket", "balance", "locked"
        )
    )
    assert not bad_wallets, f"wallets out of bounds (user, asset, bucket, balance, locked): {bad_wallets}"

    actual_locks = {
        (user_id, asset_id): locked
        for user_id, asset_id, locked in Wallet.objects.filter(bucket=0)
        .exclude(locked=0)
        .values_list("user_id", "asset_id", "locked")
    }
    assert actual_locks == expected_locks(), "wallet locks differ from the live orders' locked_amount"
    system_locks = list(Wallet.objects.exclude(bucket=0).exclude(locked=0).values_list("user_id", "asset_id", "bucket"))
    assert not system_locks, f"system sub-wallets hold locks: {system_locks}"

    order_rows = Order.objects.all() if market_id is None else Order.objects.filter(market_id=market_id)
    trade_rows = Trade.objects.all() if market_id is None else Trade.objects.filter(market_id=market_id)
    orders = list(
        order_rows.values_list(
            "pk",
            "type",
            "time_in_force",
            "status",
            "quantity",
            "filled_quantity",
            "quote_filled",
            "fee_paid",
            "locked_amount",
            "triggered_at",
            "side",
            "price",
        )
    )
    fills: dict[int, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for taker_id, maker_id, quantity, quote, taker_fee, maker_fee in trade_rows.values_list(
        "taker_order_id", "maker_order_id", "quantity", "quote_amount", "taker_fee", "maker_fee"
    ):
        for order_id, fee in ((taker_id, taker_fee), (maker_id, maker_fee)):
            if order_id is not None:
                total = fills[order_id]
                total[0] += quantity
                total[1] += quote
                total[2] += fee
    for pk, kind, tif, status, quantity, filled, quote_filled, fee_paid, locked, triggered_at, side, price in orders:
        where = f"order {pk} ({kind} {tif} {status})"
        assert ZERO <= filled <= quantity, f"{where} overfilled: {filled} of {quantity}"
        if filled:
            assert fills.get(pk) == [filled, quote_filled, fee_paid], (
                f"{where}: trades {fills.get(pk)} != order fills {[filled, quote_filled, fee_paid]}"
            )
        else:
            assert pk not in fills, f"{where} has trades but no fill"
        if status in TERMINAL_STATUSES:
            assert locked == 0, f"{where} is terminal but holds {locked}"
        if status == OrderStatus.FILLED:
            assert filled == quantity, f"{where} filled but {filled} of {quantity}"
        if status in (OrderStatus.OPEN, OrderStatus.PENDING_TRIGGER):
            assert filled == 0, f"{where} has fills"
        if status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            # Only GTC limit orders rest on the book; market, IOC, FOK and triggered stops never do.
            assert kind == "limit" and tif == "GTC", f"{where} left resting"
            needs = (
                quantity - filled
                if side == OrderSide.SELL
                else buy_lock_amount(quantity=quantity - filled, price=price, taker_fee_bps=settings.TAKER_FEE_BPS)
            )
            if fee_rates_changed and side == OrderSide.BUY:
                # Placed under other rates: it holds what its lock then was, less what its
                # fills took, never less than its remainder's notional.
                notional = quantize_up((quantity - filled) * price)
                assert locked >= notional, f"{where} holds {locked}, less than its remainder's notional {notional}"
            else:
                assert locked == needs, f"{where} holds {locked}, its remainder needs {needs}"
        if tif == "FOK":
            assert filled in (ZERO, quantity), f"{where}: FOK partly filled ({filled} of {quantity})"
        if status == OrderStatus.PENDING_TRIGGER:
            assert kind in ("stop_loss", "take_profit") and triggered_at is None, f"{where} pending"

    self_trades = trade_rows.filter(taker_user_id=F("maker_user_id")).count()
    assert self_trades == 0, f"{self_trades} self-trades"
