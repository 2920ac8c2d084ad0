"""`{{ code|sentence }}` or `{{ code|sentence:message }}`: accounts.error_text for templates."""

from __future__ import annotations

from django import template

from accounts.error_text import error_sentence

register = template.Library()


@register.filter
def sentence(code: str | None, default: str = "") -> str:
    return error_sentence(code, default)
