"""The engine's side of the streams (docs/streams.md): what one committed batch changed,
published to the stream groups.

`batch_committed` runs on the engine thread right after the batch's COMMIT, before the next
batch: it reads the changed book levels from the in-memory book (so they are exactly the
committed book) and numbers them per market (`book_event`). It returns the rest of the work,
which the sequencer's announcer runs off the batch loop: trades, tickers, candles and the
users' orders and fills read back from the database in the shapes of the REST API, then
sent through the relay (orders.streams.relay)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from orders.api.serializers import CandleOutput, MarketTradeOutput, OrderOutput, UserTradeOutput, money_text, user_fill
from orders.engine.book import LiveOrder
from orders.engine.market import Journal, MarketEngine
from orders.engine.types import Side
from orders.models import Trade
from orders.selectors.candles import INTERVALS, candle_list
from orders.selectors.orders import order_list_by_ids
from orders.streams.relay import relay_send
from orders.streams.ticker import market_ticker

# Book updates are numbered per market, +1 for each batch that changed its book. A
# subscriber keeps the number of its snapshot and applies only the next one; the epoch
# changes with each engine process, so a number from another engine never matches.
EPOCH = uuid.uuid4().hex[:12]
_book_events: dict[int, int] = {}

BOOK_SNAPSHOT = "book_snapshot"  # the engine command a consumer sends for a snapshot
Message = tuple[str, dict[str, Any]]  # (group, message)


def book_event(market_id: int) -> int:
    return _book_events.get(market_id, 0)


def group_of(channel: str) -> str:
    """The channel layer group of a public channel (`book:ETH-USDT` -> `book.ETH-USDT`)."""
    return channel.replace(":", ".")


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def _level(price: Decimal, quantity: Decimal, orders: int) -> list[Any]:
    return [money_text(price), money_text(quantity), orders]


def book_snapshot(engine: MarketEngine | None) -> dict[str, Any]:
    """The engine's answer to BOOK_SNAPSHOT, between two batches: the whole book from memory
    as GET .../book shapes it, with the number of the last update published for it."""
    if engine is None:
        return {"status": 404, "error": {"code": "market_not_found", "message": "No such market."}}
    book = {
        "symbol": engine.spec.symbol,
        **{
            key: [
                {"price": money_text(p), "quantity": money_text(q), "orders": n} for p, q, n in engine.book.levels(side)
            ]
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


def batch_committed(*, journal: Journal, markets: dict[int, MarketEngine]) -> Callable[[], None]:
    """On the engine thread, right after COMMIT: the book updates of the batch, numbered;
    returns what the announcer publishes."""
    new = {id(order) for order in journal.new_orders}
    orders = [*journal.new_orders, *(o for key, o in journal.touched.items() if key not in new)]
    messages: list[Message] = []
    for market_id, keys in _changed_levels(orders, new).items():
        engine = markets.get(market_id)
        if engine is None:
            continue
        data: dict[str, list[list[Any]]] = {"bids": [], "asks": []}
        for side, price in sorted(keys, key=lambda key: (key[0].value, key[1])):
            data["bids" if side is Side.BUY else "asks"].append(_level(price, *engine.book.level(side, price)))
        for key in data:  # best first, as the REST book
            data[key].sort(key=lambda level: Decimal(level[0]), reverse=key == "bids")
        _book_events[market_id] = book_event(market_id) + 1
        channel = f"book:{engine.spec.symbol}"
        event = book_event(market_id)
        message = {"type": "stream.book", "channel": channel, "event": event, "epoch": EPOCH, "data": data}
        messages.append((f"book.{engine.spec.symbol}", message))
    trade_ids = [trade.id for trade in journal.trades if trade.id is not None]
    order_ids = [order.id for order in orders if order.id is not None]
    return lambda: publish(book=messages, trade_ids=trade_ids, order_ids=order_ids)


def _data(group: str, channel: str, data: Any) -> Message:
    # JSON-plain (DRF gives ReturnDicts): the same text through every relay.
    return group, {"type": "stream.data", "channel": channel, "data": json.loads(json.dumps(data))}


def publish(*, book: list[Message], trade_ids: list[int], order_ids: list[int]) -> None:
    """Off the batch loop: everything the batch changed, in the REST API's shapes."""
    messages = list(book)
    traded: dict[int, Any] = {}
    for trade in Trade.objects.filter(pk__in=trade_ids).select_related("market").order_by("id"):
        symbol = trade.market.symbol
        traded[trade.market_id] = trade.market
        messages.append(_data(f"trades.{symbol}", f"trades:{symbol}", MarketTradeOutput(trade).data))
        for user_id in {trade.taker_user_id, *([] if trade.is_house else [trade.maker_user_id])}:
            fill = UserTradeOutput(user_fill(trade, user_id)).data
            messages.append(_data(user_group(user_id), "fills", fill))
    for market in traded.values():
        ticker = market_ticker(market_id=market.pk, symbol=market.symbol)
        messages.append(_data(f"ticker.{market.symbol}", f"ticker:{market.symbol}", ticker))
        for interval in INTERVALS:
            latest = candle_list(market_id=market.pk, interval=interval, limit=1)
            if latest:
                channel = f"candles:{market.symbol}:{interval}"
                messages.append(_data(group_of(channel), channel, CandleOutput(latest[-1]).data))
    if order_ids:
        for order in order_list_by_ids(order_ids=order_ids):
            messages.append(_data(user_group(order.user_id), "orders", OrderOutput(order).data))
    relay_send(messages)
