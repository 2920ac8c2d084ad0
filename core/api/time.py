"""GET /api/time: the server's clock, for clients that sign requests (a 5-second window)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


def server_time_text() -> str:
    """Now, ISO-8601 UTC with millisecond precision: 2026-12-03T07:15:00.123Z."""
    return timezone.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ServerTimeSerializer(serializers.Serializer):
    server_time = serializers.CharField(help_text="ISO-8601 UTC, millisecond precision.")


class ServerTimeApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []  # nothing to refuse: a clock for everyone

    @extend_schema(
        responses={200: ServerTimeSerializer},
        operation_id="time_get",
    )
    def get(self, request: Request) -> Response:
        response = Response(ServerTimeSerializer({"server_time": server_time_text()}).data)
        # A clock read from a cache is a wrong clock: a proxy or client library that kept
        # this answer would have every signature after it refused as out of the window.
        response["Cache-Control"] = "no-store"
        return response
