"""A JSON body is UTF-8 whatever charset its Content-Type names (RFC 8259: the media type
has no charset parameter): the API's DRF parser decoded by it, the order path did not."""

from __future__ import annotations

import json

import pytest

from accounts.models import ApiKey
from orders.models import Order
from tests.conftest import jwt_client
from tests.factories import UserFactory, fund, market_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "utf-16", "ascii"])
def test_a_utf8_body_under_another_charset_is_read_as_utf8(charset):
    client = jwt_client(UserFactory())
    body = json.dumps({"label": "clé de test", "permissions": ["read"]}, ensure_ascii=False).encode()
    answer = client.post("/api/keys", data=body, content_type=f"application/json; charset={charset}")
    assert answer.status_code == 201, answer.content
    assert ApiKey.objects.get().label == "clé de test"


def test_an_order_under_another_charset_keeps_its_client_order_id():
    market_create("ETH-USDT")
    user = UserFactory()
    fund(user, "USDT", "1000")
    order = {"market": "ETH-USDT", "side": "buy", "type": "limit", "quantity": "0.1", "price": "1000.00"}
    body = json.dumps({**order, "client_order_id": "bot-é1"}, ensure_ascii=False).encode()
    answer = jwt_client(user).post("/api/orders", data=body, content_type="application/json; charset=latin-1")
    assert answer.status_code == 201, answer.content
    assert Order.objects.get().client_order_id == "bot-é1"


def test_bytes_that_are_not_utf8_are_a_malformed_body():
    client = jwt_client(UserFactory())
    body = '{"label": "clé", "permissions": ["read"]}'.encode("latin-1")
    answer = client.post("/api/keys", data=body, content_type="application/json; charset=latin-1")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "malformed_request"
