from __future__ import annotations

from functools import cache
from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.params import IntParam, query_value
from core.errors import InvalidParameter
from core.text import parse_id

INVALID_CURSOR = "Not a cursor of this list: use the `next` link of a page."
PAGE_LIMIT = IntParam("limit", default=50, minimum=1, maximum=200, description="Items per page.")
CURSOR = OpenApiParameter(
    "cursor", str, OpenApiParameter.QUERY, description="From the `next` link of the previous page."
)


class NewestFirstPagination(CursorPagination):
    """The contract's list shape: {"results": [...], "next": url|null}; stable under inserts."""

    ordering = "-id"
    page_size = PAGE_LIMIT.default
    page_size_query_param = PAGE_LIMIT.name
    max_page_size = PAGE_LIMIT.maximum

    def get_page_size(self, request: Request) -> int:
        # DRF falls back to the default on "abc", "-5" or "0" and clamps 10**6 silently; the
        # schema (PAGE_LIMIT) says 1 to 200, and so does the answer: 400 invalid_parameter.
        return PAGE_LIMIT.read(request)

    def decode_cursor(self, request: Request) -> Cursor | None:
        # DRF checks the offset and the direction of a cursor but hands its position to
        # the query as is: a forged one (base64 of "p=abc") was a ValueError, a 500. The
        # position of this ordering is an id. A cursor that does not read is a query
        # parameter refused (400 invalid_parameter), as a bad `limit` is: DRF's 404 said
        # the list itself was not found.
        query_value(request, self.cursor_query_param)  # once: two cursors are two pages
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
        else:
            if cursor is None or cursor.position is None or parse_id(str(cursor.position)) is not None:
                return cursor
        raise InvalidParameter(fields={self.cursor_query_param: [INVALID_CURSOR]})

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {"results": schema, "next": {"type": "string", "nullable": True, "format": "uri"}},
        }


@cache
def paginated(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """The schema of a page of `serializer_class` items, for `@extend_schema(responses=...)` on
    views that paginate by hand (an APIView has no `pagination_class` for drf-spectacular to see):
    a declared serializer class per item type (one schema component each), made once."""
    page = type(
        f"Paginated{serializer_class.__name__}List",
        (serializers.Serializer,),
        {
            "__module__": __name__,
            "__doc__": f"A page of {serializer_class.__name__}: the contract's list shape.",
            "results": serializer_class(many=True),
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last one."),
        },
    )
    return page()
