"""Request bodies take the fields they declare and nothing else (core.api.inputs.
KnownFieldsInput): a member that names no field is refused with its name, and the schema
of every request body says so (additionalProperties: false)."""

from __future__ import annotations

import pytest

from core.errors import UNKNOWN_FIELD
from tests.factories import market_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(api_client) -> dict:
    return api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()


def test_every_request_body_of_the_schema_is_closed(schema):
    components = schema["components"]["schemas"]
    bodies = [
        (path, method, operation["requestBody"]["content"]["application/json"]["schema"]["$ref"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "requestBody" in operation
    ]
    assert len(bodies) >= 9, bodies
    for path, method, ref in bodies:
        component = components[ref.rsplit("/", 1)[-1]]
        assert component.get("additionalProperties") is False, (method, path, component)


@pytest.mark.parametrize(
    ("door", "path", "body"),
    [
        ("anonymous", "/api/auth/register", {"username": "newcomer", "password": "a-long-passphrase-1", "is_staff": 1}),
        ("anonymous", "/api/auth/token", {"username": "nobody", "password": "x", "otp": "123456"}),
        ("anonymous", "/api/auth/token/refresh", {"refresh": "a.b.c", "access": "a.b.c"}),
        ("anonymous", "/api/auth/logout", {"refresh": "a.b.c", "all": True}),
        ("user", "/api/keys", {"label": "bot", "permissions": ["read"], "expires": "2030-01-01"}),
        ("staff", "/api/admin/wallets/credit", {"username": "x", "asset": "USDT", "amount": "1", "note": "deposit"}),
        ("staff", "/api/admin/markets/ETH-USDT/reference-price", {"price": "2000.00", "market": "BTC-USDT"}),
    ],
)
def test_a_member_that_names_no_field_is_refused(api_client, user_client, staff_client, door, path, body):
    market_create("ETH-USDT")
    client = {"anonymous": api_client, "user": user_client, "staff": staff_client}[door]
    response = client.post(path, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    unknown = [name for name, messages in error["fields"].items() if messages == [UNKNOWN_FIELD]]
    assert len(unknown) == 1 and unknown[0] not in ("username", "password", "refresh", "label", "price"), error
