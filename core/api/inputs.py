"""Request bodies read by a declared serializer that knows every field it takes: a member
it does not name is refused (400 validation_error, `fields` naming it), and the schema says
so (`additionalProperties: false`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from core.errors import unknown_fields


class KnownFieldsInput(serializers.Serializer):
    """A serializer of a request body that refuses members it has no field for, with the
    problems of its own fields (core.errors.unknown_fields)."""

    def to_internal_value(self, data: Any) -> Any:
        unknown = unknown_fields(data, known=self.fields) if isinstance(data, Mapping) else {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as refused:
            if unknown and isinstance(refused.detail, dict):
                raise serializers.ValidationError({**refused.detail, **unknown}) from None
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class KnownFieldsInputScheme(OpenApiSerializerExtension):
    """The schema of every KnownFieldsInput: drf-spectacular's own, closed."""

    target_class = KnownFieldsInput
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        return schema
