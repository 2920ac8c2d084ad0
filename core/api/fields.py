"""Serializer fields that accept exactly what the OpenAPI schema says they accept."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField turns 0, 1.5 and true into text,
    which a schema saying `type: string` does not allow (schemathesis: a schema-violating
    request accepted)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
