"""An order's answer goes through OrderOutput's declared fields, bound once
(orders.api.serializers.order_output): the same as DRF building the serializer for the
order, for orders of every kind and state, read back or just placed (the engine's answer
from memory), with a time zone other than UTC active too. That the fast field classes write
what DRF's own fields write is property-tested in tests/core/test_api_output_fields.py."""

from __future__ import annotations

import json
import threading

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from orders.api.serializers import OrderOutput, order_output
from orders.engine.requests import OrderRequest
from orders.models import Order
from orders.selectors.orders import order_get_for_user
from orders.services.orders import order_cancel, order_place
from tests.orders.support import fund_house

pytestmark = pytest.mark.django_db


def assert_same_answer(order: Order) -> None:
    shaped, built = order_output(order), OrderOutput(order).data
    assert shaped == dict(built)
    assert list(shaped) == list(built)  # same keys in the same order
    assert JSONRenderer().render(shaped) == JSONRenderer().render(built)


@pytest.fixture
def orders_of_every_kind(market, trader) -> list[int]:
    fund_house(market, base="10", quote="50000")
    maker = trader(ETH="3", USDT="10000")
    taker = trader(USDT="20000", ETH="2")
    for price in ("2000.00", "2001.00", "2002.00"):
        maker.order(side="sell", type="limit", quantity="0.3", price=price)
    bodies = [
        taker.order(side="buy", type="limit", quantity="0.1", price="1900.00", client_order_id="rest-1"),
        taker.order(side="buy", type="limit", quantity="1.0", price="2001.00"),
        taker.order(side="buy", type="limit", quantity="0.2", price="2002.00", time_in_force="IOC"),
        taker.order(side="buy", type="limit", quantity="5", price="2002.00", time_in_force="FOK"),
        taker.order(side="buy", type="market", quantity="0.5"),  # book, then the house
        taker.order(side="sell", type="stop_loss", quantity="0.1", stop_price="1500.00"),  # waits
        taker.order(side="sell", type="take_profit", quantity="0.1", stop_price="1500.00"),  # fires at once
        maker.order(side="sell", type="limit", quantity="0.0001", price="2500.00", stp="expire_both"),
    ]
    ids = []
    for response in bodies:
        assert response.status_code == 201, response.content
        ids.append(int(response.json()["id"]))
    order_cancel(user=taker.user, order_id=ids[0])
    return ids


def test_every_kind_and_state_answers_as_the_declared_fields(orders_of_every_kind):
    orders = [Order.objects.get(pk=pk) for pk in orders_of_every_kind]
    assert {order.status for order in orders} >= {"cancelled", "partially_filled", "filled", "expired", "open"}
    for order in orders:
        assert_same_answer(order_get_for_user(user_id=order.user_id, order_id=order.pk))
        assert_same_answer(order)  # without prefetches: the same relations, loaded lazily


def test_in_another_time_zone_too(orders_of_every_kind):
    order = Order.objects.get(pk=orders_of_every_kind[1])
    with timezone.override("America/New_York"):
        shaped = order_output(order_get_for_user(user_id=order.user_id, order_id=order.pk))
        assert shaped == OrderOutput(order).data
    assert shaped["created_at"].endswith(("-05:00", "-04:00"))
    assert order_output(order)["created_at"].endswith("Z")


def test_the_order_just_placed_answers_as_the_declared_fields(market, trader):
    maker = trader(ETH="1")
    maker.order(side="sell", type="limit", quantity="0.3", price="2000.00")
    taker = trader(USDT="5000")
    result = order_place(
        user=taker.user,
        request=OrderRequest(market="ETH-USDT", side="buy", type="limit", quantity="0.5", price="2000.00"),
    )
    assert result.body is not None  # the engine's answer, built from memory right after the commit
    read_back = json.loads(JSONRenderer().render(order_output(Order.objects.get(pk=result.order_id))))
    assert json.loads(JSONRenderer().render(result.body)) == read_back
    assert (read_back["status"], read_back["side"], len(read_back["fills"])) == ("partially_filled", "buy", 1)


def test_threads_share_the_bound_fields(orders_of_every_kind):
    orders = [order_get_for_user(user_id=order.user_id, order_id=order.pk) for order in Order.objects.all()]
    expected = [OrderOutput(order).data for order in orders]
    answers: list[list[dict]] = []
    start = threading.Barrier(4)

    def shape_all() -> None:
        start.wait()
        answers.append([order_output(order) for order in orders for _ in range(20)][::20])

    threads = [threading.Thread(target=shape_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [expected] * 4
