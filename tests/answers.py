"""What the views wrote before their answers were declared serializers (issue 20): a
selector's dicts as they are, Decimals as format_amount writes them. Tests compare the
declared answers with these bytes."""

from __future__ import annotations

from decimal import Decimal

from rest_framework.renderers import JSONRenderer

from core.money import format_amount


def hand_built(value: object) -> object:
    if isinstance(value, dict):
        return {k: hand_built(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hand_built(v) for v in value]
    return format_amount(value) if isinstance(value, Decimal) else value


def hand_built_bytes(value: object) -> bytes:
    return JSONRenderer().render(hand_built(value))
