from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from orders.errors import MarketNotFound
from orders.models import Asset, Market
from orders.sequencer.commands import answer_raise, reference_price_command
from orders.sequencer.transport import engine_call


def markets_ensure(*, assets: Mapping[str, str], markets: Mapping[str, tuple[str, str, str, str]]) -> dict[str, Market]:
    """Assets (symbol: name) and markets (symbol: tick, step, min quantity, reference
    price) created where missing, existing ones left as they are (seeding may run again)."""
    rows = {s: Asset.objects.get_or_create(symbol=s, defaults={"name": n})[0] for s, n in assets.items()}
    found: dict[str, Market] = {}
    for symbol, (tick, step, min_qty, ref) in markets.items():
        base, quote = symbol.split("-")
        found[symbol], _ = Market.objects.get_or_create(
            symbol=symbol,
            defaults={
                "base": rows[base],
                "quote": rows[quote],
                "price_tick": Decimal(tick),
                "quantity_step": Decimal(step),
                "min_quantity": Decimal(min_qty),
                "reference_price": Decimal(ref),
            },
        )
    return found


def market_reference_price_set(*, symbol: str, price: object) -> Market:
    """Sent through the market's sequencer, so that it changes between two commands."""
    market_id = Market.objects.filter(symbol=symbol).values_list("pk", flat=True).first()
    if market_id is None:
        raise MarketNotFound()
    answer_raise(engine_call(reference_price_command(market_id=market_id, price=price), market=symbol))
    return Market.objects.select_related("base", "quote").get(pk=market_id)
