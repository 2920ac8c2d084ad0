"""The engine's side of the streams (docs/streams.md): what one committed batch changed,
published to the stream groups.

`batch_committed` runs on the engine thread right after the batch's COMMIT, before the next
batch: it reads the changed book levels from the in-memory book (so they are exactly the
committed book) and numbers them per market (`book_event`). It returns the rest of the work,
which the sequencer's announcer runs off the batch loop: trades, tickers, candles and the
users' orders and fills read back from the database in the shapes of the REST API, then
sent through the relay (orders.streams.relay)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from core.api.fields import moment_text
from core.money import format_amount
from orders.engine.book import LiveOrder
from orders.engine.market import Journal, MarketEngine, TradeRecord
from orders.engine.types import Side
from orders.errors import MarketNotFound
from orders.selectors.tickers import TICKER_WINDOW
from orders.sequencer.answers import MAKER, TAKER
from orders.sequencer.commands import error_answer
from orders.streams.marketdata import MarketData
from orders.streams.relay import Message, relay_send

# Book updates are numbered per market, +1 for each batch that changed its book. A
# subscriber keeps the number of its snapshot and applies only the next one; the epoch
# changes with each engine process, so a number from another engine never matches.
EPOCH = uuid.uuid4().hex[:12]
_book_events: dict[int, int] = {}
Top = tuple[MarketEngine, str, Decimal | None, Decimal | None, int]  # ..., the book's event number
# Candle and ticker messages carry the position of the state they show (beside `channel`:
# the client's message is unchanged): TRADE_FIELD the market's last trade in it, and the
# ticker's the book's event number and EPOCH too; a consumer drops one at or before its
# snapshot's position (orders.streams.consumers).
TRADE_FIELD = "trade"
# Ticker messages also carry when their window will have lost a trade (Unix seconds, None:
# no trade in it): a quiet market's subscribers then refresh it (StreamConsumer).
EXPIRES_FIELD = "expires"

BOOK_SNAPSHOT = "book_snapshot"  # the engine command a consumer sends for a snapshot


def book_event(market_id: int) -> int:
    return _book_events.get(market_id, 0)


def group_of(channel: str) -> str:
    """The channel layer group of a public channel (`book:ETH-USDT` -> `book.ETH-USDT`)."""
    return channel.replace(":", ".")


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def book_snapshot(engine: MarketEngine | None, *, top: bool = False) -> dict[str, Any]:
    """The engine's answer to BOOK_SNAPSHOT, between two batches: the whole book from memory
    as GET .../book shapes it, with the number of the last update published for it. `top`
    (the command's `"top": true`): the best level of each side only, all a ticker needs (the
    whole book of a deep market is milliseconds of the engine's thread per request)."""
    if engine is None:
        return error_answer(MarketNotFound())

    def levels(side: Side) -> list[tuple[Decimal, Decimal, int]]:
        if not top:
            return engine.book.levels(side)
        best = engine.book.best(side)
        return [] if best is None else [(best, *engine.book.level(side, best))]

    book = {
        "symbol": engine.spec.symbol,
        **{
            key: [{"price": format_amount(p), "quantity": format_amount(q), "orders": n} for p, q, n in levels(side)]
            for key, side in (("bids", Side.BUY), ("asks", Side.SELL))
        },
    }
    return {"status": 200, "book": book, "event": book_event(engine.spec.id), "epoch": EPOCH}


def _changed_levels(orders: Iterable[LiveOrder], new: set[int]) -> dict[int, set[tuple[Side, Decimal]]]:
    """The (side, price) levels each market's book may have changed at: every order that
    rested before the batch or rests after it (a new order that never rested changed none)."""
    changed: dict[int, set[tuple[Side, Decimal]]] = {}
    for order in orders:
        if order.price is None or (id(order) in new and not order.is_live):
            continue
        changed.setdefault(order.market_id, set()).add((order.side, order.price))
    return changed


def _book_update(engine: MarketEngine, keys: set[tuple[Side, Decimal]]) -> dict[str, Any]:
    """The contract's update, `{bids: [[price, quantity]], asks: [...]}` best first (quantity
    "0": the level is gone), and the levels' order counts in `orders`, `{bids: [n], asks:
    [n]}` in the same positions: what GET .../book's levels carry besides price and quantity."""
    levels: dict[str, list[tuple[Decimal, Decimal, int]]] = {"bids": [], "asks": []}
    for side, price in keys:
        levels["bids" if side is Side.BUY else "asks"].append((price, *engine.book.level(side, price)))
    data: dict[str, Any] = {"bids": [], "asks": [], "orders": {"bids": [], "asks": []}}
    for key, changed in levels.items():
        for price, quantity, orders in sorted(changed, reverse=key == "bids"):
            # the contract's removal mark is the string "0", not the amount 0.00000000
            data[key].append([format_amount(price), format_amount(quantity) if quantity else "0"])
            data["orders"][key].append(orders)
    return data


def batch_committed(*, journal: Journal, markets: dict[int, MarketEngine]) -> Callable[[], None]:
    """On the engine thread, right after COMMIT: the book updates of the batch, numbered,
    and the book tops; returns what the announcer publishes (which reads no memory that a
    later batch changes: trade records and order ids are final once written)."""
    if settings.STREAMS_RELAY == "off":
        return _nothing
    new = {id(order) for order in journal.new_orders}
    orders = [*journal.new_orders, *(o for key, o in journal.touched.items() if key not in new)]
    messages: list[Message] = []
    changed = _changed_levels(orders, new)
    for market_id, keys in changed.items():
        engine = markets.get(market_id)
        if engine is None:
            continue
        _book_events[market_id] = book_event(market_id) + 1
        channel = f"book:{engine.spec.symbol}"
        event = book_event(market_id)
        data = _book_update(engine, keys)
        message = {"type": "stream.book", "channel": channel, "event": event, "epoch": EPOCH, "data": data}
        messages.append((f"book.{engine.spec.symbol}", message))
    tops: dict[int, Top] = {}
    for market_id in {*changed, *(trade.taker.market_id for trade in journal.trades)}:
        engine = markets.get(market_id)
        if engine is not None:
            best_bid, best_ask = engine.book.best(Side.BUY), engine.book.best(Side.SELL)
            tops[market_id] = (engine, engine.spec.symbol, best_bid, best_ask, book_event(market_id))
    trades = list(journal.trades)
    order_ids = [(order.user_id, order.id) for order in orders if order.id is not None]
    return lambda: publish(book=messages, trades=trades, tops=tops, order_ids=order_ids)


def _nothing() -> None:
    return None


def _data(group: str, channel: str, data: Any) -> Message:
    return group, {"type": "stream.data", "channel": channel, "data": data}


# Private messages name their user: a connection that has left a user's group (it
# authenticated as another user) may still hold messages the group queued for it before,
# and the consumer drops those that are not its present user's (consumers.StreamConsumer).
USER_FIELD = "user"


def _private(user_id: int, channel: str, data: Any) -> Message:
    group, message = _data(user_group(user_id), channel, data)
    return group, {**message, USER_FIELD: user_id}


# Written out rather than through the DRF serializers, which cost half a millisecond per
# object in the engine process, and from the trade records themselves (a model instance per
# trade and market was a quarter of this work): the same text as MarketTradeOutput and
# UserTradeOutput (format_amount and moment_text are how DRF writes them; tests/orders/streams compare
# the two, and orders.selectors.orders.trade_user_fill is the rule of a user's side of it).
def _trade_bodies(record: TradeRecord, *, symbol: str, executed_at: str) -> list[Message]:
    """The trade's public message and each of its users' fill (the house has none)."""
    price, quantity = format_amount(record.price), format_amount(record.quantity)
    taker_side = record.taker.side.value
    trade_id = str(record.id)
    messages = [
        _data(
            f"trades.{symbol}",
            f"trades:{symbol}",
            {
                "id": trade_id,
                "price": price,
                "quantity": quantity,
                "taker_side": taker_side,
                "executed_at": executed_at,
            },
        )
    ]
    taker_user, house = record.taker.user_id, record.maker is None
    for user_id in {taker_user, *([] if house else [record.maker_user_id])}:
        as_taker = taker_user == user_id
        order_id = (record.taker.id or 0) if as_taker else (None if record.maker is None else record.maker.id)
        fill = {
            "trade_id": trade_id,
            "order_id": str(order_id),
            "market": symbol,
            "side": taker_side if as_taker else record.taker.side.opposite.value,
            "price": price,
            "quantity": quantity,
            "fee": format_amount(record.settled.taker_fee if as_taker else record.settled.maker_fee),
            "liquidity": TAKER if as_taker else MAKER,
            "executed_at": executed_at,
        }
        messages.append(_private(user_id, "fills", fill))
    return messages


def publish(
    *,
    book: list[Message],
    trades: list[TradeRecord],
    tops: dict[int, Top],
    order_ids: list[tuple[int, int]],
) -> None:
    """Off the batch loop: everything the batch changed, in the REST API's shapes. Trades,
    fills, candles and tickers come from memory; orders as references (below)."""
    messages = list(book)
    traded: dict[int, list[tuple[int, Decimal, Decimal, Decimal, Any]]] = {}
    moments: dict[datetime, str] = {}  # a batch's trades share its moment: formatted once
    for record in trades:
        market_id = record.taker.market_id
        if record.id is None or market_id not in tops:
            continue
        symbol = tops[market_id][1]
        executed_at = moments.get(record.executed_at)
        if executed_at is None:
            executed_at = moments[record.executed_at] = moment_text(record.executed_at) or ""
        traded.setdefault(market_id, []).append(
            (record.id, record.price, record.quantity, record.settled.notional, record.executed_at)
        )
        messages += _trade_bodies(record, symbol=symbol, executed_at=executed_at)
    for market_id, (engine, symbol, best_bid, best_ask, event) in tops.items():
        # Candles and tickers kept with the engine: a reloaded market starts afresh from the database.
        data = engine.announced
        if not isinstance(data, MarketData):
            data = engine.announced = MarketData(market_id=market_id)
        for interval, candle in data.trades_applied(traded.get(market_id, [])):
            channel = f"candles:{symbol}:{interval}"
            group, message = _data(group_of(channel), channel, candle)
            messages.append((group, {**message, TRADE_FIELD: data.last_trade_id}))
        ticker = data.ticker(symbol=symbol, best_bid=best_bid, best_ask=best_ask)
        group, message = _data(f"ticker.{symbol}", f"ticker:{symbol}", ticker)
        first = data.window_first
        expires = None if first is None else (first + TICKER_WINDOW).timestamp()
        position = {TRADE_FIELD: data.last_trade_id, "event": event, "epoch": EPOCH, EXPIRES_FIELD: expires}
        messages.append((group, {**message, **position}))
    changed: dict[int, list[int]] = {}
    for user_id, order_id in order_ids:
        changed.setdefault(user_id, []).append(order_id)
    for user_id, ids in changed.items():
        # Only references, one message per user and batch: the consumers of that user (if
        # any) read the orders' whole bodies (every fill and event, as GET /api/orders/{id})
        # together, so nobody listening costs nothing and a sweep costs one read.
        messages.append(
            (user_group(user_id), {"type": "stream.orders", "channel": "orders", "ids": ids, USER_FIELD: user_id})
        )
    relay_send(messages)
