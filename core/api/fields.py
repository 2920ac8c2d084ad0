"""Serializer fields that accept exactly what the OpenAPI schema says they accept."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from types import FunctionType, MethodType
from typing import Any, cast

from django.core.exceptions import ObjectDoesNotExist
from django.db.models.manager import BaseManager
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField, is_simple_callable
from rest_framework.relations import PKOnlyObject

from core.money import format_amount


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField turns 0, 1.5 and true into text,
    which a schema saying `type: string` does not allow (schemathesis: a schema-violating
    request accepted)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false and nothing else: DRF's BooleanField takes "yes", 1 and "on"
    too, which a schema saying `type: boolean` does not allow."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_field(OpenApiTypes.STR)
class AmountText(serializers.Field):
    """An amount, written as core.money.format_amount writes it."""

    def to_representation(self, value: Any) -> str | None:
        return format_amount(value)


def moment_text(value: datetime | None) -> str | None:
    """A moment as every answer writes it (DRF's DateTimeField): ISO 8601 in the current
    time zone, UTC as Z."""
    if value is None:
        return None
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class MoneyOutput(serializers.DecimalField):
    """An amount in an answer: DRF's DecimalField(30, 8) as a string, written by
    core.money.format_amount (DRF copies the decimal context and builds the quantum on every
    value; an order answer has about ten of them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=30, decimal_places=8, coerce_to_string=True, **kwargs)

    def to_representation(self, value: Decimal | int) -> str | None:  # type: ignore[override]
        return format_amount(value)


@extend_schema_field({"type": "string", "format": "decimal", "pattern": "^\\d+(?:\\.\\d{8})?$"})
class MoneySumOutput(MoneyOutput):
    """A sum of amounts in an answer (a volume, a price level of the book), written as any
    amount. Not one column's value: it can pass a column's 22 integer digits (a day's
    quote volume at 1e21 scale), so its schema states no bound on them, where MoneyOutput's
    (a DecimalField(30, 8)) states 22."""


class MomentOutput(serializers.DateTimeField):
    """A moment in an answer, as DRF's DateTimeField writes it with the default format."""

    def to_representation(self, value: datetime) -> str | None:  # type: ignore[override]
        return moment_text(value)


Shaper = Callable[[Any], dict[str, Any]]
# How DRF's look-up treats a value, by its type (isinstance against an ABC, twice per
# attribute, was a third of the shaping time): read by key, called (what
# fields.is_simple_callable then decides) or read by attribute.
_MAPPING, _CALLABLE, _OBJECT = "mapping", "callable", "object"
_kinds: dict[type, str] = {}


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        kind = _MAPPING
    elif isinstance(value, FunctionType | MethodType | functools.partial):
        kind = _CALLABLE
    else:
        kind = _OBJECT
    _kinds[type(value)] = kind
    return kind


def output_shaper(serializer_class: type[serializers.Serializer]) -> Shaper:
    """What `serializer_class(instance).data` gives for one instance, through the same
    declared fields, bound once (call it at import) and walked by a plan made from them.
    DRF deep-copies every declared field each time a serializer is built, and reads each
    value through three layers of generic look-up: for a single order answer (22 fields,
    two nested lists) that costs more than writing it. Anything the plan does not cover
    (a missing attribute, a default, a skipped field) goes to the field's own DRF look-up,
    so the answers are DRF's; tests/core/test_api_output_fields.py compares the two."""
    serializer = serializer_class()
    if type(serializer).to_representation is not serializers.Serializer.to_representation:
        return serializer.to_representation  # its own way: kept
    plan = [
        (cast(str, field.field_name), field, _plain_lookup(field), _representer(serializer, field))
        for field in serializer._readable_fields
    ]

    def shape(instance: Any) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        for name, field, attrs, represent in plan:
            if attrs is None:  # a field with its own look-up (related fields)
                try:
                    value = field.get_attribute(instance)
                except SkipField:
                    continue
                if isinstance(value, PKOnlyObject) and value.pk is None:
                    value = None
            else:
                try:
                    value = instance
                    for attr in attrs:
                        kind = _kinds.get(type(value)) or _kind(value)
                        value = value[attr] if kind is _MAPPING else getattr(value, attr)
                        if (_kinds.get(type(value)) or _kind(value)) is _CALLABLE and is_simple_callable(value):
                            value = value()
                except ObjectDoesNotExist:
                    value = None
                except (KeyError, AttributeError):  # DRF's answer: a default, None, skipped or its error
                    try:
                        value = field.get_attribute(instance)
                    except SkipField:
                        continue
            answer[name] = None if value is None else represent(value)
        return answer

    return shape


def _plain_lookup(field: serializers.Field) -> tuple[str, ...] | None:
    """The attributes DRF's Field.get_attribute would follow, or None for a field that
    looks its value up its own way."""
    if type(field).get_attribute is not serializers.Field.get_attribute:
        return None
    return tuple(field.source_attrs)


def _representer(serializer: serializers.Serializer, field: serializers.Field) -> Callable[[Any], Any]:
    if isinstance(field, serializers.SerializerMethodField):
        return cast(Callable[[Any], Any], getattr(serializer, field.method_name))
    if type(field) is serializers.ListSerializer and isinstance(field.child, serializers.Serializer):
        child = output_shaper(type(field.child))

        def many(items: Any) -> list[dict[str, Any]]:
            return [child(item) for item in (items.all() if isinstance(items, BaseManager) else items)]

        return many
    if isinstance(field, serializers.Serializer):
        return output_shaper(type(field))
    return field.to_representation
