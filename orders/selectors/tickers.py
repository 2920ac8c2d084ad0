"""24-hour tickers of markets, from their trades and their books: a fixed number of
queries whatever the number of markets and trades (one selector for one market and all)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import reduce

from django.db.models import Max, Min, Q
from django.utils import timezone

from core.db import money_sums
from core.money import ZERO, exact_arithmetic
from orders.models import RESTING_STATUSES, Market, Order, OrderSide, Trade

TICKER_WINDOW = timedelta(hours=24)
PERCENT_QUANTUM = Decimal("0.01")


def change_percent(*, last: Decimal | None, opening: Decimal | None) -> Decimal | None:
    """The 24-hour change of every ticker (REST, streams, pages): last against the window's
    opening price in percent, 2 places, half even; None without both. A fall too small to
    show is 0.00, not -0.00."""
    if not opening or last is None:
        return None
    with exact_arithmetic():
        change = ((last - opening) * 100 / opening).quantize(PERCENT_QUANTUM)
    return abs(change) if change.is_zero() else change


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    last_price: Decimal | None
    best_bid: Decimal | None
    best_ask: Decimal | None
    open_24h: Decimal | None
    high_24h: Decimal | None
    low_24h: Decimal | None
    volume_24h: Decimal
    quote_volume_24h: Decimal
    change_24h_percent: Decimal | None
    first_at: datetime | None = None  # when the window's first trade was made (it leaves a day later)


def trade_last_id(*, market_id: int) -> int:
    """The id of the market's last trade (0: none); ids grow in the order the market's
    engine commits its trades."""
    last: int | None = Trade.objects.filter(market_id=market_id).aggregate(last=Max("id"))["last"]
    return last or 0


def trade_last_executed_at(*, market_id: int) -> datetime | None:
    """When the market's latest trade was executed (None: none), read as the last entry of
    the index trade_market_time."""
    return (
        Trade.objects.filter(market_id=market_id).order_by("-executed_at").values_list("executed_at", flat=True).first()
    )


def ticker_list(*, markets: list[Market], through: dict[int, int] | None = None, book_top: bool = True) -> list[Ticker]:
    """One ticker per market, in the order given. `open_24h` is the price of the first trade
    of the last 24 hours, `change_24h_percent` is last against it (2 decimals, half even);
    volumes are exact sums of base quantities and quote amounts; prices are null when
    there is none (no trade in the window, an empty side of the book).

    `through` (market id -> trade id, 0 for none): count each market's trades up to that one,
    and take its price as the last, for a ticker at a known position (the streams' snapshot,
    which their updates are compared with: trades committed while it is read are left out).
    `book_top=False`: the best bid and ask are not read (None), for a caller that shows none
    or has them already (the pages' tickers; a stream snapshot takes the engine's)."""
    ids = [market.pk for market in markets]
    since = timezone.now() - TICKER_WINDOW
    window = Trade.objects.filter(market_id__in=ids, executed_at__gte=since)
    last_prices = {market.pk: market.last_price for market in markets}
    if through is not None:
        bounds = [Q(market_id=market_id, pk__lte=through.get(market_id, 0)) for market_id in ids]
        window = window.filter(reduce(operator.or_, bounds, Q(pk__in=[])))
        prices = dict(Trade.objects.filter(pk__in=through.values()).values_list("market_id", "price"))
        last_prices = {market_id: prices.get(market_id) for market_id in ids}
    extremes = {
        row["market_id"]: row
        for row in window.values("market_id").annotate(high=Max("price"), low=Min("price"), first_id=Min("id"))
    }
    volumes = money_sums(window, group_by="market_id", fields=["quantity", "quote_amount"])
    opens = {
        market_id: (price, at)
        for market_id, price, at in Trade.objects.filter(pk__in=[r["first_id"] for r in extremes.values()]).values_list(
            "market_id", "price", "executed_at"
        )
    }
    bids: dict[int, Decimal] = {}
    asks: dict[int, Decimal] = {}
    if book_top:
        resting = Order.objects.filter(market_id__in=ids, status__in=RESTING_STATUSES).values("market_id")
        bids = dict(resting.filter(side=OrderSide.BUY).annotate(best=Max("price")).values_list("market_id", "best"))
        asks = dict(resting.filter(side=OrderSide.SELL).annotate(best=Min("price")).values_list("market_id", "best"))
    tickers = []
    for market in markets:
        stats = extremes.get(market.pk)
        volume, quote_volume = volumes.get(market.pk, (ZERO, ZERO))
        open_price, first_at = opens.get(market.pk, (None, None))
        last_price = last_prices[market.pk]
        tickers.append(
            Ticker(
                symbol=market.symbol,
                last_price=last_price,
                best_bid=bids.get(market.pk),
                best_ask=asks.get(market.pk),
                open_24h=open_price,
                high_24h=stats["high"] if stats else None,
                low_24h=stats["low"] if stats else None,
                volume_24h=volume,
                quote_volume_24h=quote_volume,
                change_24h_percent=change_percent(last=last_price, opening=open_price),
                first_at=first_at,
            )
        )
    return tickers
