"""What clients read about an operation is written for them: the schema's descriptions (the
interactive docs show them) and OPTIONS answers carried the views' docstrings, notes for the
code's readers ("with header credentials and a JSON body it never reaches this class
(orders.api.hot, see as_view)", on GET /api/orders too)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

CODE_NOTE = re.compile(r"\b(?:accounts|core|orders|revenue|flywheel)\.[a-z_]+|as_view|this class")


def test_no_operation_of_the_schema_is_described_by_a_note_on_the_code(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    described = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            description = operation.get("description", "")
            described += bool(description)
            assert not CODE_NOTE.search(description), (method, path, description)
    assert described >= 4
    orders = schema["paths"]["/api/orders"]
    assert orders["get"]["description"] != orders["post"]["description"]


@pytest.mark.parametrize("path", ["/api/orders", "/api/orders/1/cancel", "/api/auth/token/refresh", "/api/markets"])
def test_options_answers_carry_no_docstring(user_client, path):
    response = user_client.options(path)
    assert response.status_code == 200
    assert response.json()["description"] == ""
