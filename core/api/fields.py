"""Serializer fields that accept exactly what the OpenAPI schema says they accept."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import format_amount


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField turns 0, 1.5 and true into text,
    which a schema saying `type: string` does not allow (schemathesis: a schema-violating
    request accepted)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.STR)
class AmountText(serializers.Field):
    """An amount, written as core.money.format_amount writes it."""

    def to_representation(self, value: Any) -> str | None:
        return format_amount(value)
