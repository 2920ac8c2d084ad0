from __future__ import annotations

from orders.errors import MarketNotFound
from orders.models import Market
from orders.sequencer.commands import answer_raise, reference_price_command
from orders.sequencer.transport import engine_call


def market_reference_price_set(*, symbol: str, price: object) -> Market:
    """Sent through the market's sequencer, so that it changes between two commands."""
    market_id = Market.objects.filter(symbol=symbol).values_list("pk", flat=True).first()
    if market_id is None:
        raise MarketNotFound()
    answer_raise(engine_call(reference_price_command(market_id=market_id, price=price), market=symbol))
    return Market.objects.select_related("base", "quote").get(pk=market_id)
