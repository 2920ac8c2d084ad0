from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry

from core.logging import correlation_id_get
from core.money import format_amount
from core.text import staff_reason_clean
from orders.engine.money import fills_quote_exact, is_multiple_of
from orders.errors import MarketNotFound
from orders.models import Asset, Market
from orders.sequencer.commands import answer_raise, reference_price_command
from orders.sequencer.shards import shards_uncovered
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


ASSET_SYMBOL = re.compile(r"[A-Z0-9]{1,16}")


def asset_definition_check(*, symbol: str | None) -> dict[str, list[str]]:
    """What is wrong with an asset as staff define it: its symbol is 1 to 16 capitals and
    digits, as it is part of every market's symbol (BASE-QUOTE) and of their URLs."""
    if symbol is not None and not ASSET_SYMBOL.fullmatch(symbol):
        return {"symbol": ["1 to 16 capital letters and digits (BTC, USDT)."]}
    return {}


def market_engine_check(*, symbol: str) -> list[str]:
    """What stops a new market from having an engine: no shard of ENGINE_SHARDS names it and
    none takes every other market ('*'). Created all the same, its orders answered "No such
    market" (they went to the first shard's engine, which does not load it) while its pages
    and GET /api/markets showed it."""
    if not shards_uncovered([symbol]):
        return []
    return [
        f"No engine shard owns {symbol}: name it in a shard of ENGINE_SHARDS (every process's) and restart, "
        "or let one shard take every other market ('*'), before adding it."
    ]


def market_definition_check(
    *,
    base: str | None,
    quote: str | None,
    symbol: str | None,
    price_tick: Decimal | None,
    quantity_step: Decimal | None,
    min_quantity: Decimal | None,
    reference_price: Decimal | None,
) -> dict[str, list[str]]:
    """What is wrong with a market as staff define it, per field ("__all__": the steps
    together); empty when nothing is. A value that is missing (None) is not checked. The
    symbol is its pair, BASE-QUOTE (the one form pages, API and engine route by); the steps are
    positive, their product has at most 8 decimals (every fill's quote amount exact), and the
    minimum quantity and the reference price lie on the step and tick grids."""
    errors: dict[str, list[str]] = {}
    if base is not None and quote is not None and symbol is not None and symbol != f"{base}-{quote}":
        errors["symbol"] = [f"The symbol is the pair, base-quote: {base}-{quote}."]
    tick = price_tick if price_tick is not None and price_tick > 0 else None
    step = quantity_step if quantity_step is not None and quantity_step > 0 else None
    if price_tick is not None and tick is None:
        errors["price_tick"] = ["Must be positive."]
    if quantity_step is not None and step is None:
        errors["quantity_step"] = ["Must be positive."]
    if tick is not None and step is not None and not fills_quote_exact(price_tick=tick, quantity_step=step):
        errors["__all__"] = [
            "Price tick x quantity step must have at most 8 decimals, so that every fill's quote amount "
            f"(price x quantity) is exact: {tick * step:f} has more."
        ]
    if (
        step is not None
        and min_quantity is not None
        and min_quantity > 0
        and not is_multiple_of(min_quantity, unit=step)
    ):
        errors["min_quantity"] = ["The minimum quantity must be a multiple of the quantity step."]
    if tick is not None and reference_price is not None and not is_multiple_of(reference_price, unit=tick):
        errors["reference_price"] = ["The reference price must be a multiple of the price tick."]
    return errors


REFERENCE_PRICE_REASON_BLANK = "A reason, when given, says something (or leave it out): it is kept in the History."


def market_reference_price_set(
    *, symbol: str, price: object, large_move: bool = False, actor: Any = None, reason: str | None = None
) -> Market:
    """Sent through the market's sequencer, so that it changes between two commands.

    `actor` (the staff API's caller): the change is written to the market's history in the
    admin (Django's LogEntry: who, when, from which price to which, the request's id, and
    `reason` when given: optional, refused when blank, too long or with control characters).
    The reference price prices the house's fills: a change of it moves money, and nothing
    said who had made one. A move beyond REFERENCE_PRICE_MAX_MOVE_PERCENT of both the
    reference and the last price is refused unless `large_move` (a mistyped price)."""
    why = None if reason is None else staff_reason_clean(reason=reason, missing=REFERENCE_PRICE_REASON_BLANK)
    found = Market.objects.filter(symbol=symbol).values_list("pk", "reference_price").first()
    if found is None:
        raise MarketNotFound()
    market_id, before = found
    command = reference_price_command(market_id=market_id, price=price, large_move=large_move)
    answer_raise(engine_call(command, market=symbol))
    market = Market.objects.select_related("base", "quote").get(pk=market_id)
    if actor is not None:
        LogEntry.objects.log_actions(
            user_id=actor.pk,
            queryset=[market],
            action_flag=CHANGE,
            change_message=(
                f"Reference price {format_amount(before)} -> {format_amount(market.reference_price)} "
                f"through the staff API (request {correlation_id_get()})" + (f"; reason: {why}" if why else "")
            ),
            single_object=True,
        )
    return market
