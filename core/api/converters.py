"""Path converters of the API's routes."""

from __future__ import annotations

from django.urls.converters import PathConverter


class AnyTextConverter(PathConverter):
    """Any text, slashes and line breaks included (Django's `path` is `.+`, whose dot
    stops at a line break): a client's own id is any text (shared/spec/api.md)."""

    regex = r"[\s\S]+"
