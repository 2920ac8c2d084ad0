"""The ticker a stream's snapshot sends: the REST ticker's (orders.selectors.tickers, the
trades of the last 24 hours, as GET .../ticker answers) in the contract's ticker shape, the
shape orders.streams.marketdata writes the updates in, by the same window rule."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orders.models import Market
from orders.selectors.tickers import TICKER_WINDOW, ticker_list
from orders.streams.marketdata import ticker_body


def market_ticker_at(
    *,
    market_id: int,
    symbol: str,
    through: int | None = None,
    top: tuple[Decimal | None, Decimal | None] | None = None,
) -> tuple[dict[str, Any], float | None]:
    """The ticker and when its window will have lost its first trade (Unix seconds; None: no
    trade in it), in a fixed number of statements (the REST ticker's). `through`: of the
    trades up to that one (ticker_list's); `top`: this best bid and ask (the engine's), not
    the database's."""
    market = Market.objects.get(pk=market_id)
    (ticker,) = ticker_list(
        markets=[market], through=None if through is None else {market_id: through}, book_top=top is None
    )
    best_bid, best_ask = (ticker.best_bid, ticker.best_ask) if top is None else top
    expires = None if ticker.first_at is None else (ticker.first_at + TICKER_WINDOW).timestamp()
    body = ticker_body(
        symbol=symbol,
        last=ticker.last_price,
        best_bid=best_bid,
        best_ask=best_ask,
        opening=ticker.open_24h,
        high=ticker.high_24h,
        low=ticker.low_24h,
        volume=ticker.volume_24h,
        quote_volume=ticker.quote_volume_24h,
    )
    return body, expires
