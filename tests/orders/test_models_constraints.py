"""The database refuses orders and trades the engine never writes (orders/models.py,
constraints of migration 0010): what tests/orders/invariants.py checks after every
operation holds for rows written by any other means too (a shell, the admin, a bug)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F

from orders.models import Order, Trade
from tests.orders.support import fund_house, place

pytestmark = pytest.mark.django_db


@pytest.fixture
def resting(market, trader) -> Order:
    """A GTC limit buy resting unfilled."""
    return place(trader(USDT="10000").user, side="buy", type="limit", quantity="0.1", price="1900.00")


@pytest.fixture
def pending_stop(market, trader) -> Order:
    return place(trader(ETH="1").user, side="sell", type="stop_loss", quantity="0.5", stop_price="1800.00")


@pytest.fixture
def house_trade(market, trader) -> Trade:
    """A market buy filled from the house (a trade without a maker order)."""
    fund_house(market, base="10", quote="50000")
    order = place(trader(USDT="10000").user, side="buy", type="market", quantity="0.1")
    return Trade.objects.get(taker_order=order)


def _refused(model: type[Any], pk: int, **changes: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=pk).update(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"time_in_force": "IOC"},  # resting IOC
        {"time_in_force": "FOK"},  # resting FOK
        {"type": "market"},  # a market order on the book
        {"side": "bid"},
        {"time_in_force": "gtc"},
        {"stp": "cancel_both"},
    ],
)
def test_a_resting_order_the_engine_never_rests_is_refused(resting: Order, changes: dict[str, Any]) -> None:
    _refused(Order, resting.pk, **changes)


def test_an_order_of_an_unknown_type_is_refused(resting: Order) -> None:
    _refused(Order, resting.pk, type="stop_limit", status="cancelled", locked_amount=0)


def test_a_partly_filled_fok_order_is_refused(resting: Order) -> None:
    _refused(
        Order, resting.pk, time_in_force="FOK", status="expired", locked_amount=0, filled_quantity=F("quantity") / 2
    )


def test_a_fok_order_filled_all_or_nothing_is_accepted(resting: Order) -> None:
    Order.objects.filter(pk=resting.pk).update(time_in_force="FOK", status="expired", locked_amount=0)
    Order.objects.filter(pk=resting.pk).update(status="filled", filled_quantity=F("quantity"))
    assert Order.objects.get(pk=resting.pk).status == "filled"


def test_only_an_untriggered_stop_waits_for_its_trigger(resting: Order, pending_stop: Order) -> None:
    _refused(Order, resting.pk, status="pending_trigger")  # a limit order
    _refused(Order, pending_stop.pk, triggered_at=F("created_at"))  # triggered, still waiting


@pytest.mark.parametrize(
    "changes",
    [{"maker_user": F("taker_user")}, {"taker_side": "long"}],
)
def test_a_self_trade_or_a_trade_of_an_unknown_side_is_refused(house_trade: Trade, changes: dict[str, Any]) -> None:
    _refused(Trade, house_trade.pk, **changes)
