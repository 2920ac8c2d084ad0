from __future__ import annotations

import logging

from django.db import transaction

from core.money import parse_amount
from orders.errors import InvalidPrice, MarketNotFound
from orders.locks import lock_market
from orders.models import Market

logger = logging.getLogger(__name__)


@transaction.atomic(durable=True)
def market_reference_price_set(*, symbol: str, price: object) -> Market:
    market_id = Market.objects.filter(symbol=symbol).values_list("pk", flat=True).first()
    if market_id is None:
        raise MarketNotFound()
    market = lock_market(market_id=market_id)
    value = parse_amount(price)
    if value is None or value <= 0 or value % market.price_tick != 0:
        raise InvalidPrice(fields={"price": [f"Must be a positive multiple of the price tick {market.price_tick}."]})
    old = market.reference_price
    market.reference_price = value
    market.save(update_fields=["reference_price"])
    logger.info("reference price set", extra={"market": symbol, "from": str(old), "to": str(value)})
    return market
